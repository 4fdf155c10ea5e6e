"""Locust scenarios for WebSocket servers, with latency in microseconds that merges across workers.

Locustfiles (each usable as `locust -f scenarios/NAME.py --host ws://HOST:PORT ...`; their
parameters are Locust custom arguments, shown in the web UI's start form):

    echo.py        closed-loop round trips on /echo
    echo_rate.py   open model on /echo: scheduled sends, corrected and uncorrected latency
    connect.py     connection storm and churn: connect, maybe echo once, close, repeat
    hold.py        many idle connections (optional pings): how many a target holds
    broadcast.py   publishers and subscribers in /broadcast rooms: fan-out latency and loss
    push.py        /push subscriptions: one-way latency and sequence gaps
    naive_echo.py  the untuned baseline of the generator benchmark (bench.py)

The machinery they share, one concern per module:

    user.py         WebSocketUser: connect with back-off, report successes and failures
    connection.py   timed opening (TCP, TLS, upgrade via websocket-client), lean frame I/O
    frames.py       client frame bytes: masking, headers, close payloads
    failures.py     what went wrong, as the one-line kinds Locust groups failures by
    deadlines.py    reply timeouts without a gevent Timeout per read (one watchdog greenlet)
    alarm.py        sub-millisecond wake-ups for open-model schedules (timerfd)
    latency.py      µs recording per process; merging HdrHistograms; percentiles
    measurement.py  windows, worker-to-master shipping (Locust custom messages), end of run
    output.py       PREFIX_latency_us*.csv/json and the µs summary table
    cpu.py          generator CPU use and the saturation verdict
    options.py      command-line options shared by every scenario
    bench.py        `python -m scenarios.bench`: generator efficiency against the naive user
"""
