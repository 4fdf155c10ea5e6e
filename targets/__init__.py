"""The reference targets: servers that speak the wsbench application protocol.

targets/ owns the application protocol (protocol.py, which the scenarios import too), the
sans-I/O RFC 6455 core (rfc6455/), the three servers on it or on their libraries (raw, aiohttp,
websockets), the shared rooms and stats (hub.py), rooms spanning processes through a Redis
broker (broker.py, `--broker`), the counters for Prometheus (metrics.py, `GET /metrics`) and
the target CLI with its SO_REUSEPORT supervisor (server.py, `python -m targets NAME`). It
imports only `common` (and its libraries): never the harness, the scenarios, the reports, the
kernel package, the benchmarks or Locust, so a target runs alone.
"""

# The target registry: name -> the module whose `serve(ctx)` runs it.
TARGETS: dict[str, str] = {
    "aiohttp": "targets.aiohttp_server",
    "websockets": "targets.websockets_server",
    "raw": "targets.raw_server",
}
# The targets that serve permessage-deflate (RFC 7692) with --compression deflate: each through
# its library's own implementation. The raw target's sans-I/O core has none and refuses it.
DEFLATE_TARGETS = frozenset({"aiohttp", "websockets"})
COMPRESSIONS = ("none", "deflate")
