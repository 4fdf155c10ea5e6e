"""`python -m scenarios.check [--max-message-bytes N] SCENARIO [OPTION ...]`: refuse, before any
load, the scenario options that cannot work. `python -m scenarios.check --batch` reads a JSON
list of {"scenario", "options", "max_message_bytes"} on stdin and checks each in turn.

The options are parsed by Locust's own parser with the scenario's locustfile loaded, exactly as
`locust -f scenarios/SCENARIO.py OPTION ...` would parse them, so the locustfiles stay the one
place options are defined (their types refuse bad values, see scenarios/options.py). On top of
that parse it refuses what only a runner knows is wrong:

- options that name a destination (-H/--host, --master-host, --master-bind-host): wsbench's
  own --target is where the load goes, and that is what its loopback guard checks;
- words that are not options (Locust would take them for User class names);
- with --max-message-bytes (a reference target's limit), a message size over it: every message
  would be closed with 1009, or every push subscription refused.

Exit 0 and no output when the options are fine; otherwise exit 2 and one line on stderr,
`SCENARIO: what is wrong` (in a batch, the first such line).

Its cost is importing Locust (most of a second). A batch pays it once: Locust is imported, then
each check runs in a forked child, which loads its own locustfile, so each scenario's parser
holds that scenario's options only (listeners are global, and add_once shares options).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

SCENARIO_DIR = Path(__file__).resolve().parent
EXIT_BAD_INPUT = 2
# Locust options that send the load, or the Locust processes' traffic, somewhere: the runner
# sets them itself from --target (and its own master/worker plan).
DESTINATIONS = {
    "host": "the target is --target (--targets in a sweep), and only it is checked to be "
    "this machine; drop this option",
    "master_host": "the runner connects its own Locust processes; for workers on other "
    "machines use --expect-workers and `wsbench worker --master-host`",
    "master_bind_host": "the runner binds its Locust master to loopback; for workers on "
    "other machines use `wsbench run --expect-workers N --master-bind-host`",
}
# Options whose value is the size of each message a scenario sends or asks the server for.
SIZE_OPTIONS = {"payload_bytes": "--payload-bytes", "push_size": "--push-size"}
_UNSET = object()


class OptionsError(Exception):
    """Options that cannot work; the message is one line."""


def _refuse(message: str) -> None:
    raise OptionsError(message)


def check(scenario: str, options: Sequence[str], max_message_bytes: int | None = None) -> None:
    """OptionsError unless `options` are ones the scenario's Locust run can use."""
    locustfile = SCENARIO_DIR / f"{scenario}.py"
    if not locustfile.is_file():
        raise OptionsError(f"no locustfile {locustfile}")
    # Imported here: locust monkey-patches the process with gevent on import.
    from locust.argument_parser import get_parser
    from locust.util.load_locustfile import load_locustfile

    users, _ = load_locustfile(str(locustfile))  # registers the locustfile's option listeners
    parser = get_parser(default_config_files=[])
    parser.error = _refuse  # type: ignore[method-assign]  # one line, not usage and exit
    guarded = [a for a in parser._actions if a.dest in DESTINATIONS]
    for action in guarded:  # a default that cannot be typed tells "given" from "not given"
        action.default = _UNSET
    parsed = parser.parse_args(list(options), env_vars={})
    for action in guarded:
        value = getattr(parsed, action.dest)
        if value is not _UNSET:
            raise OptionsError(f"{'/'.join(action.option_strings)} {value}: "
                               f"{DESTINATIONS[action.dest]}")  # fmt: skip
    strays = [name for name in parsed.user_classes if name not in users]
    if strays:
        raise OptionsError(f"unexpected argument {strays[0]!r}: scenario options start with --")
    if max_message_bytes is not None:
        for dest, flag in SIZE_OPTIONS.items():
            size = getattr(parsed, dest, None)
            if size is not None and size > max_message_bytes:
                raise OptionsError(
                    f"{flag} {size} is over the reference target's limit of "
                    f"{max_message_bytes} bytes per message (it would close each one with "
                    "1009 or refuse it)"
                )


def _one(scenario: str, options: Sequence[str], max_message_bytes: int | None) -> int:
    try:
        check(scenario, options, max_message_bytes)
    except OptionsError as exc:
        print(f"{scenario}: {exc}", file=sys.stderr, flush=True)
        return EXIT_BAD_INPUT
    return 0


def batch(checks: Sequence[dict[str, object]]) -> int:
    """Each check in a child forked after Locust is imported; the first failure's status."""
    # The cost, paid once before the forks: Locust, and the machinery every locustfile imports
    # (which adds only the options they all share).
    import locust.argument_parser  # noqa: F401

    import scenarios.user  # noqa: F401

    for item in checks:
        pid = os.fork()
        if pid == 0:  # the child: one locustfile, one parser
            status = 1
            try:
                status = _one(str(item["scenario"]), [str(o) for o in item.get("options") or []],
                              item.get("max_message_bytes"))  # type: ignore[arg-type]
            except SystemExit as exc:  # e.g. --help: printed, as Locust would
                status = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stderr.flush()
                os._exit(status)
        _, wait_status = os.waitpid(pid, 0)
        status = os.waitstatus_to_exitcode(wait_status)
        if status != 0:
            return status
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    if list(argv if argv is not None else sys.argv[1:]) == ["--batch"]:
        return batch(json.load(sys.stdin))
    cli = argparse.ArgumentParser(prog="python -m scenarios.check", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--max-message-bytes", type=int,
                     help="the target's message size limit (a reference target's)")
    cli.add_argument("scenario")
    cli.add_argument("options", nargs=argparse.REMAINDER)
    args = cli.parse_args(argv)
    return _one(args.scenario, args.options, args.max_message_bytes)


if __name__ == "__main__":
    sys.exit(main())
