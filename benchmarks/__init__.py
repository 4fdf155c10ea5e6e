"""The suite's own benchmarks: they measure wsbench itself, and store runs like users' runs.

    generator.py    `python -m benchmarks.generator` (make bench-generator): capacity, fidelity,
                    closed-loop efficiency and memory of the load generator, next to yardsticks
    closed_loop.py  closed-loop echo vs the naive Locust user, and what µs recording costs
    naive_echo.py   the naive Locust user (the closed-loop yardstick; do not improve it)
    reference.py    the reference client: picows + uvloop on the same schedules as ours
    sink.py         a picows + uvloop echo server, the fastest sink for the capacity section
    targets.py      `python -m benchmarks.targets` (make bench-targets): echo msgs/s, idle KiB/conn
    targets_client.py  its client process: uvloop, scenarios/frames.py framing, counts echoes
    scale.py        `python -m benchmarks.scale RUN_DIR` (make bench-scale): how long 100k were held
    deflate.py      `python -m benchmarks.deflate`: KiB per held connection and server µs per
                    message of aiohttp and websockets without and with permessage-deflate
    deflate_client.py  its client process: the websockets library's client, text messages

picows is an optional extra (`pip install -e '.[bench]'`): only these modules import it.
Benchmarks may import every package of the suite; nothing imports them (no product code
depends on a benchmark).
"""
