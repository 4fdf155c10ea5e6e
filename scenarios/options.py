"""Command-line options shared by every scenario, as Locust custom arguments.

Custom arguments show in the web UI's start form and reach workers with each spawn, so a
scenario reads them from `environment.parsed_options` when a user starts, never at import.
Scenario-specific options are added the same way by each locustfile (see `add_once`).
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import signal
import socket
import ssl
import sys
from collections.abc import Callable
from typing import Any

from locust import events
from locust.env import Environment

from common.procs import die_with
from scenarios.connection import ConnectSettings, client_ssl_context

DEFAULT_TIMEOUT_S = 10.0
# The reconnect policy after a dropped or refused connection: the first wait, its doubling cap,
# and how much of each wait is random (0: every user waits the same, a synchronised storm).
DEFAULT_RECONNECT_BACKOFF_MS = 100.0
DEFAULT_RECONNECT_MAX_MS = 5000.0
DEFAULT_RECONNECT_JITTER = 0.5
COMPRESSIONS = ("none", "deflate")


def add_once(parser: argparse.ArgumentParser, flag: str, **kwargs: Any) -> None:
    """parser.add_argument, skipped if `flag` exists: two locustfiles may share an option."""
    if flag not in parser._option_string_actions:
        parser.add_argument(flag, **kwargs)


def _number(kind: type, text: str) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {'an integer' if kind is int else 'a number'}, "
                                         f"got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def at_least(minimum: float, kind: type = float) -> Callable[[str], Any]:
    """An argparse `type=` that refuses values under `minimum` (a count or a pause)."""
    def parse(text: str) -> Any:
        value = _number(kind, text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum:g}, got {text}")
        return value
    parse.__name__ = f"{kind.__name__} >= {minimum:g}"
    return parse


def positive(kind: type = float) -> Callable[[str], Any]:
    """An argparse `type=` that refuses zero and below (a rate, a size, a timeout, a length)."""
    def parse(text: str) -> Any:
        value = _number(kind, text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
        return value
    parse.__name__ = f"{kind.__name__} > 0"
    return parse


def share(text: str) -> float:
    """An argparse `type=` for a share between 0 and 1."""
    value = _number(float, text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


non_negative_float = at_least(0.0)
non_negative_int = at_least(0, int)
positive_float = positive(float)
positive_int = positive(int)


def ca_file(text: str) -> str:
    """An argparse `type=` for --ws-ca-file: a readable file of PEM certificates, or "" (none).

    Checked here because the scenario only loads it when its first user connects: a bad file
    would otherwise surface as failures inside the run (or only in locust.log)."""
    if not text:
        return text
    try:
        with open(text, "rb"):
            pass
        ssl.create_default_context().load_verify_locations(cafile=text)
    except ssl.SSLError:  # an OSError too: first
        raise argparse.ArgumentTypeError(f"{text} holds no PEM certificate") from None
    except OSError as error:
        raise argparse.ArgumentTypeError(f"cannot read {text}: {error.strerror}") from None
    return text


@events.init_command_line_parser.add_listener
def _connection_arguments(parser: argparse.ArgumentParser, **_: object) -> None:
    add_once(parser, "--ws-timeout-s", type=positive_float, default=DEFAULT_TIMEOUT_S,
             help="Seconds to wait for a connect, handshake or reply before it is a failure")
    add_once(parser, "--ws-ca-file", type=ca_file, default="",
             help="CA certificate file to trust for wss:// (python -m targets X --tls prints one)")
    add_once(parser, "--ws-insecure", action="store_true", default=False,
             help="wss:// without certificate checks")
    add_once(parser, "--ws-header", action="append", default=[], include_in_web_ui=False,
             help="Extra upgrade request header 'Name: value' (repeatable), e.g. an auth token")
    add_once(parser, "--ws-subprotocols", default="",
             help="Comma-separated subprotocols to offer (Sec-WebSocket-Protocol)")
    add_once(parser, "--ws-origin", default="", help="Origin header of the upgrade request")
    # Not in the web UI's form: the target's side is fixed when it starts (wsbench ui
    # --compression), and a session's record says what the run was started with.
    add_once(parser, "--ws-compression", choices=COMPRESSIONS, default="none",
             include_in_web_ui=False,
             help="deflate: offer permessage-deflate (RFC 7692) and compress messages; a "
             "server that does not accept it fails the upgrade (default: none)")
    add_once(parser, "--ws-source-ips", default="",
             help="Comma-separated local IPs to connect from, round-robin (e.g. "
             "127.0.0.2,127.0.0.3): each adds its own range of ephemeral ports. Each "
             "process uses those its host has, so one list serves workers on several hosts")
    add_once(parser, "--reconnect-backoff-ms", type=non_negative_float,
             default=DEFAULT_RECONNECT_BACKOFF_MS,
             help="Wait before the first reconnect after a dropped or refused connection; "
             "doubled after each failure in a row")
    add_once(parser, "--reconnect-max-ms", type=non_negative_float,
             default=DEFAULT_RECONNECT_MAX_MS, help="Longest wait between reconnects")
    add_once(parser, "--reconnect-jitter", type=share, default=DEFAULT_RECONNECT_JITTER,
             help="Random share of each wait, 0..1: a wait of W ms lasts between "
             "W x (1 - jitter) and W (0: every dropped user reconnects at the same moment)")
    add_once(parser, "--ws-spread-s", type=non_negative_float, default=0.0,
             help="Each user first waits a random time up to this many seconds before its "
             "first connect: Locust starts each second's users at once, and their connects "
             "would queue in the generator (with -r equal to -u, all users start at once and "
             "this alone paces the ramp)")
    add_once(parser, "--latency-window-s", type=positive_float, default=1.0,
             help="Length of the windows of the latency history (PREFIX_latency_us_history.csv)")
    add_once(parser, "--skip-ramp", action="store_true", default=False,
             help="Leave the ramp out of the run's totals and the generator self-check: count "
             "from two windows after the one in which every user's connection was open (after "
             "the spawning, where connections come and go), one for the ramp's backlog to "
             "clear; the history keeps every window")
    add_once(parser, "--no-histograms", action="store_true", default=False,
             include_in_web_ui=False,
             help="Benchmarking only: skip the µs histograms (python -m benchmarks.generator "
             "measures what recording costs); Locust's own statistics remain")


@events.init.add_listener
def _die_with_master(environment: Environment, **_: object) -> None:
    """A worker that Locust forked (--processes) dies as soon as the process that forked it.

    The runner's children get PR_SET_PDEATHSIG (common/procs.py), but Locust's forked workers
    do not inherit it: with their master killed outright they would hold their connections
    until the heartbeat gives up, about 15 s later."""
    opts = environment.parsed_options
    if opts is None or not getattr(opts, "worker", False) or not getattr(opts, "processes", 0):
        return
    if not sys.platform.startswith("linux"):
        return
    die_with(os.getppid(), signal.SIGKILL)


def option(environment: Environment, name: str, default: Any) -> Any:
    """An option's value, or `default` when run without Locust's parser (Environment API)."""
    value = getattr(environment.parsed_options, name, None)
    return default if value is None else value


def _split(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def connect_settings(environment: Environment) -> ConnectSettings:
    """This process's ConnectSettings for the current options (shared, so source IPs rotate)."""
    return _settings(
        float(option(environment, "ws_timeout_s", DEFAULT_TIMEOUT_S)),
        option(environment, "ws_ca_file", "") or None,
        bool(option(environment, "ws_insecure", False)),
        tuple(option(environment, "ws_header", ())),
        _split(option(environment, "ws_subprotocols", "")),
        option(environment, "ws_origin", "") or None,
        _split(option(environment, "ws_source_ips", "")),
        option(environment, "ws_compression", "none") == "deflate",
    )


@functools.lru_cache(maxsize=8)
def _settings(
    timeout_s: float,
    ca_file: str | None,
    insecure: bool,
    headers: tuple[str, ...],
    subprotocols: tuple[str, ...],
    origin: str | None,
    source_ips: tuple[str, ...],
    deflate: bool = False,
) -> ConnectSettings:
    return ConnectSettings(
        timeout_s=timeout_s,
        ssl_context=client_ssl_context(ca_file, insecure),
        headers=headers,
        subprotocols=subprotocols,
        origin=origin,
        source_ips=local_only(source_ips),
        deflate=deflate,
    )


def local_only(addresses: tuple[str, ...]) -> tuple[str, ...]:
    """The addresses this host has (a distributed master sends every worker the same list);
    all of them when none is local, so that connecting fails and says why (EADDRNOTAVAIL)."""
    mine = []
    for address in addresses:
        with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as probe:
            try:
                probe.bind((address, 0))
            except OSError:
                continue
            mine.append(address)
    return tuple(mine) or addresses
