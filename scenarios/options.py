"""Command-line options shared by every scenario, as Locust custom arguments.

Custom arguments show in the web UI's start form and reach workers with each spawn, so a
scenario reads them from `environment.parsed_options` when a user starts, never at import.
Scenario-specific options are added the same way by each locustfile (see `add_once`).
"""

from __future__ import annotations

import argparse
import functools
import socket
from typing import Any

from locust import events
from locust.env import Environment

from scenarios.connection import ConnectSettings, client_ssl_context

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_RECONNECT_MAX_S = 5.0


def add_once(parser: argparse.ArgumentParser, flag: str, **kwargs: Any) -> None:
    """parser.add_argument, skipped if `flag` exists: two locustfiles may share an option."""
    if flag not in parser._option_string_actions:
        parser.add_argument(flag, **kwargs)


@events.init_command_line_parser.add_listener
def _connection_arguments(parser: argparse.ArgumentParser, **_: object) -> None:
    add_once(parser, "--ws-timeout-s", type=float, default=DEFAULT_TIMEOUT_S,
             help="Seconds to wait for a connect, handshake or reply before it is a failure")
    add_once(parser, "--ws-ca-file", default="",
             help="CA certificate file to trust for wss:// (python -m targets X --tls prints one)")
    add_once(parser, "--ws-insecure", action="store_true", default=False,
             help="wss:// without certificate checks")
    add_once(parser, "--ws-header", action="append", default=[], include_in_web_ui=False,
             help="Extra upgrade request header 'Name: value' (repeatable), e.g. an auth token")
    add_once(parser, "--ws-subprotocols", default="",
             help="Comma-separated subprotocols to offer (Sec-WebSocket-Protocol)")
    add_once(parser, "--ws-origin", default="", help="Origin header of the upgrade request")
    add_once(parser, "--ws-source-ips", default="",
             help="Comma-separated local IPs to connect from, round-robin (e.g. "
             "127.0.0.2,127.0.0.3): each adds its own range of ephemeral ports. Each "
             "process uses those its host has, so one list serves workers on several hosts")
    add_once(parser, "--ws-reconnect-max-s", type=float, default=DEFAULT_RECONNECT_MAX_S,
             help="Longest back-off between reconnects after a dropped or refused connection")
    add_once(parser, "--latency-window-s", type=float, default=1.0,
             help="Length of the windows of the latency history (PREFIX_latency_us_history.csv)")
    add_once(parser, "--no-histograms", action="store_true", default=False,
             include_in_web_ui=False,
             help="Benchmarking only: skip the µs histograms (python -m scenarios.bench "
             "measures what recording costs); Locust's own statistics remain")


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
) -> ConnectSettings:
    return ConnectSettings(
        timeout_s=timeout_s,
        ssl_context=client_ssl_context(ca_file, insecure),
        headers=headers,
        subprotocols=subprotocols,
        origin=origin,
        source_ips=local_only(source_ips),
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
