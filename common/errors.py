"""The one exception root of the suite: every package's bad-input and run errors derive from it.

WsbenchError            a one-line message for the user, and the exit status the CLI returns
├── common    ProcessError (NotReady, ExitedEarly), ResultsError (2) and its kinds
├── harness   PlanError (2), RunError, StoreError
├── kernel    KernelError, ProfileError (2), HostSysctlError
├── targets   TargetError
├── reports   ReportError (2) and its kinds
└── benchmarks BenchError

`runner.main` catches WsbenchError once and prints `wsbench: <message>`; no traceback.
Protocol errors (targets/rfc6455, scenarios/failures) are not here: they are outcomes a
connection reports, not failures of the program.
"""

from __future__ import annotations

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


class WsbenchError(Exception):
    """A failure the user is told about in one line; `exit_status` is what the CLI returns."""

    exit_status: int = EXIT_FAILED


class BadInput(WsbenchError):
    """The input (options, files, names) cannot be used: exit status 2."""

    exit_status = EXIT_BAD_INPUT
