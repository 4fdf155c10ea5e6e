"""permessage-deflate in a point's record: what the upgrades agreed to, read from the scenarios'
counters (Locust's process counts them; the harness reads the stored totals, never Locust).

A point with `--compression deflate` records how many upgrades negotiated it, each distinct set
of agreed parameters (RFC 7692 §7.1) with its count, and how many the server answered without
it: those failed their upgrade, so a server that declines fails the point with that reason.
"""

from __future__ import annotations

from typing import Any

# The counter names of scenarios/latency.py (the harness does not import the scenarios).
NEGOTIATED = "deflate negotiated"
AGREED_PREFIX = "deflate agreed: "
DECLINED = "deflate declined"


def _parameters(text: str) -> dict[str, bool | int]:
    """'server_no_context_takeover=False, client_max_window_bits=12' -> a dict of them."""
    params: dict[str, bool | int] = {}
    for item in text.split(", "):
        key, _, value = item.partition("=")
        params[key] = value == "True" if value in ("True", "False") else int(value)
    return params


def record(counters: dict[str, int], asked: str) -> dict[str, Any]:
    """The summary's `compression` entry from the point's stored counters."""
    agreed = [{"parameters": _parameters(name[len(AGREED_PREFIX):]), "connections": count}
              for name, count in sorted(counters.items()) if name.startswith(AGREED_PREFIX)]
    negotiated = int(counters.get(NEGOTIATED, 0))
    return {"asked": asked, "negotiated": negotiated > 0, "negotiated_connections": negotiated,
            "declined_connections": int(counters.get(DECLINED, 0)), "agreed": agreed}  # fmt: skip


def declined_warning(entry: dict[str, Any]) -> str | None:
    """A line for a point that measured something while some upgrades went without deflate."""
    declined = entry["declined_connections"]
    if not declined:
        return None
    return (f"{declined:,} upgrade(s) were answered without permessage-deflate, which was asked "
            "for (--compression deflate): they failed")  # fmt: skip
