"""naive_echo: the closed-loop yardstick of `python -m benchmarks.generator`, not a scenario.

What a first Locust WebSocket user usually looks like: websocket-client's create_connection,
send, recv and events.request.fire, nothing tuned. Do not improve it: it is the yardstick.

    locust -f benchmarks/naive_echo.py --host ws://127.0.0.1:PORT --headless -u 10 -t 10s
"""

from __future__ import annotations

import time

import websocket
from locust import User, task


class NaiveEchoUser(User):
    def on_start(self) -> None:
        self.ws = websocket.create_connection(self.host + "/echo")
        self.payload = "x" * 32

    @task
    def echo(self) -> None:
        start = time.perf_counter()
        self.ws.send(self.payload)
        self.ws.recv()
        self.environment.events.request.fire(
            request_type="WS",
            name="echo",
            response_time=(time.perf_counter() - start) * 1000,
            response_length=len(self.payload),
            exception=None,
            context={},
        )

    def on_stop(self) -> None:
        self.ws.close()
