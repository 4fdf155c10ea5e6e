# Two set-up commands on a fresh machine: `make bench` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install test lint bench bench-targets bench-generator bench-scale bench-broker \
	bench-failover bench-proxies bench-firewall bench-deflate bench-tls ui clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Debian's redis-server for the broker and failover tests: installed here as root when missing
# (without it, and not root, those tests are skipped, saying so).
test: install
	@command -v redis-server >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; }
	$(PY) -m ruff check .
	$(PY) -m pytest

lint: install
	$(PY) -m ruff check .

# The default benchmark: harness/sweeps/default.toml (three targets: knee, latency at 1,000 and
# 10,000 connections, a connect storm per kernel profile, broadcast, memory; about five minutes
# on 2 cores), ending with the findings table. Results go to results/<run-id>/.
bench: install
	$(VENV)/bin/wsbench sweep --config harness/sweeps/default.toml

# Throughput and memory-per-connection of the three reference targets (a benchmark, not a test).
bench-targets: install
	$(PY) -m benchmarks.targets

# Does the load generator outrun the server? Open-model capacity per core at 1,000 and 10,000
# connections, latency next to a picows reference client, closed-loop echo against a naive Locust
# user, KiB per idle connection (about 10 minutes; ARGS='--quick' or ARGS='--only capacity').
# picows (the `bench` extra) is the yardstick only; the product does not depend on it.
bench-generator: install
	$(PY) -c 'import picows' 2>/dev/null || $(PY) -m pip install --quiet -e '.[test,bench]'
	$(PY) -m benchmarks.generator $(ARGS)

# 100,000 idle connections held for 60 s against each reference target, in network namespaces
# with the tuned kernel profile (needs root; about 15 minutes), then how long each held them all
# and its memory per connection. Exit status 1 unless every target held them with no failure.
SCALE_OUT := results/$(shell date -u +%Y%m%dT%H%M%S)-scale
bench-scale: install
	$(VENV)/bin/wsbench sweep --config harness/sweeps/scale.toml --out $(SCALE_OUT); \
	$(PY) -m benchmarks.scale $(SCALE_OUT)

# What the broker costs: broadcast to 1,000 and 10,000 subscribers from one target process, and
# from four sharing the room through Debian's redis-server (about 4 minutes). The console ends
# with the findings (the broker's cost per target); `wsbench report RUN_DIR` draws them.
bench-broker: install
	$(VENV)/bin/wsbench sweep --config harness/sweeps/broker.toml

# Reverse proxies: the raw target direct, through nginx and through HAProxy (--via): echo knee,
# connect storm and memory per held connection per hop (about 3 minutes).
bench-proxies: install
	$(VENV)/bin/wsbench sweep --config harness/sweeps/proxies.toml

# A stateful firewall (nftables, conntrack) in the server namespace: its cost against `tuned`,
# and a conntrack table too small for 2,000 held connections (about 4 minutes, root). The
# table size is host-wide: --host-sysctls sets it for the run and restores it at exit.
bench-firewall: install
	$(VENV)/bin/wsbench sweep --config harness/sweeps/firewall.toml --host-sysctls

# TLS at the raw target versus at nginx and HAProxy in front of it, against plain ws://:
# handshakes per second and server CPU per handshake, echo latency, memory per held connection
# (about 3 minutes).
bench-tls: install
	$(VENV)/bin/wsbench sweep --config harness/sweeps/tls.toml

# permessage-deflate: memory per held connection and server CPU per echoed message for aiohttp
# and websockets, without and with their own implementations (about 2 minutes).
bench-deflate: install
	$(PY) -m benchmarks.deflate

# Failover drills: 2,000 held connections on 4 target processes, one killed at 10 s (with and
# without reconnect jitter), all restarted; broadcast through redis with one process killed
# (about 5 minutes). Each point's drill: drops, reconnect storm, recovery time, what was lost.
bench-failover: install
	$(VENV)/bin/wsbench sweep --config harness/sweeps/failover.toml

# Locust's web UI on a reference target, at http://127.0.0.1:8089 (this machine only; Ctrl-C
# stops both). Pick others with `make ui TARGET=aiohttp SCENARIO=broadcast`; open it to the
# network with UI_ARGS='--web-host 0.0.0.0' (or another --web-port).
TARGET   ?= raw
SCENARIO ?= echo
ui: install
	$(PY) -m runner ui --target $(TARGET) --scenario $(SCENARIO) $(UI_ARGS)

clean:
	rm -rf $(VENV) results .pytest_cache
