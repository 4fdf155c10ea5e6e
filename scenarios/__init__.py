"""Locust scenarios for WebSocket servers, with latency in microseconds that merges across workers.

Locustfiles (each usable as `locust -f scenarios/NAME.py --host ws://HOST:PORT ...`; their
parameters are Locust custom arguments, shown in the web UI's start form):

    echo.py        closed-loop round trips on /echo
    echo_rate.py   open model on /echo: scheduled sends, corrected and uncorrected latency
    connect.py     connection storm and churn: connect, maybe echo once, close, repeat
    hold.py        many idle connections (optional pings): how many a target holds
    broadcast.py   publishers and subscribers in /broadcast rooms: fan-out latency and loss
    push.py        /push subscriptions: one-way latency and sequence gaps

The machinery they share, one concern per module:

    user.py         WebSocketUser: the URL rule, connect with back-off, report successes (in
                    bulk) and failures, hand a connection to the engine
    engine.py       the per-process engine: reads and scheduled sends of every connection as
                    callbacks in gevent's hub, one timerfd timer, the wake-lag canary
    schedule.py     a connection's fixed-rate sends on the engine's timer, sends due vs made
    connection.py   timed opening (TCP, TLS, upgrade via websocket-client), blocking frame I/O
    frames.py       the client codec: masking, headers, close payloads, the frame splitter,
                    the rules for pings, closes and fragments from the server (ServerFrames)
    deflate.py      permessage-deflate (RFC 7692, --ws-compression deflate): the offer, the
                    server's answer, each message compressed and inflated (stdlib zlib)
    payloads.py     what echo messages carry (--payload-content x|text|random)
    failures.py     what went wrong, as the one-line kinds Locust groups failures by
    deadlines.py    reply timeouts without a gevent Timeout per read (one watchdog greenlet)
    latency.py      µs recording per process; merging exact counts; HdrHistograms; percentiles
    measurement.py  windows, bulk logging to Locust, worker-to-master shipping, end of run
    output.py       PREFIX_latency_us*.csv/json and the µs summary table
    selfcheck.py    the generator self-check: send lag, wake lag, CPU, sends made -> verdict
    cpu.py          generator CPU use and the saturation verdict
    options.py      command-line options shared by every scenario
    check.py        the runner's up-front check of a scenario's options

Imports: Locust, `common`, and from the targets only the protocol (targets/protocol.py) and the
RFC 6455 code enums (targets/rfc6455/codes.py); never the harness, the reports or the kernel
package, so a scenario runs as a plain locustfile anywhere.
"""
