"""Run inside a network namespace: set sysctls there and print the values in force, as JSON.

    nsenter --net=/proc/PID/ns/net -- python -m kernel.inside KEY=VALUE ... KEY ... KEY? ...

/proc/sys/net shows the namespace of the process that opens it, so sysctls of a namespace are
set by a process inside it. KEY=VALUE sets, KEY reads, KEY? reads only if the key exists.
Exit status 0 with {"values": {key: value}}, or 3 with
{"error": "one line"} when a key does not exist there or cannot be written.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

PROC_SYS = Path("/proc/sys")


def sysctl_path(key: str, root: Path = PROC_SYS) -> Path:
    """As sysctl(8): a name with a slash is a path, else dots separate the parts."""
    parts = key.split("/") if "/" in key else key.split(".")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"{key!r} is not a sysctl name")
    return root.joinpath(*parts)


def fold(text: str) -> str:
    """Whitespace folded to single spaces, as `sysctl -n` values are compared and stored."""
    return " ".join(text.split())


def read(key: str, root: Path = PROC_SYS) -> str:
    """The value as `sysctl -n` prints it, whitespace folded (OSError if it cannot be read)."""
    return fold(sysctl_path(key, root).read_text())


def apply(settings: Sequence[str], root: Path = PROC_SYS) -> dict[str, str]:
    """Write each KEY=VALUE, then read every KEY back (OSError names the key)."""
    optional = {s[:-1] for s in settings if s.endswith("?")}
    pairs = [(s.partition("=")[0], s.partition("=")[2] if "=" in s else None)
             for s in settings if not s.endswith("?")]  # fmt: skip
    pairs += [(key, None) for key in sorted(optional) if sysctl_path(key, root).exists()]
    for key, value in pairs:
        path = sysctl_path(key, root)
        if not path.exists():
            raise OSError(f"{key} does not exist in this network namespace (a host-wide key, "
                          "or its module is not loaded)")  # fmt: skip
        if value is not None and read(key, root) != fold(value):
            try:
                path.write_text(value)
            except OSError as exc:
                raise OSError(f"cannot set {key}={value}: {exc.strerror or exc}") from None
    return {key: read(key, root) for key, _ in pairs}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        print(json.dumps({"values": apply(args)}))
    except (OSError, ValueError) as exc:
        print(json.dumps({"error": str(exc)}))
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
