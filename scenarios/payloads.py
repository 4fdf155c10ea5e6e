"""What echo messages carry (--payload-content): the same byte, compressible text or random bytes.

Without compression a payload's bytes cost nothing more than its length, so every message of a
connection sends the one `first` payload (the FramePool's). With permessage-deflate they are the
measurement: `x` (one byte repeated, what the echo scenarios always sent) compresses to almost
nothing, `text` (ASCII words, like chat or JSON messages) to about a third, `random` (random
bytes, or with text frames random base64 letters: valid UTF-8) not at all. A compressor that
keeps its window across messages (context takeover) would find each message in the previous one
if they repeated, so a pool cycles through distinct messages spanning more than the largest
window (32 KiB): one pool per process and (content, size, text frames), each user starting at
a random place in it.
"""

from __future__ import annotations

import base64
import functools
import os
import random

CONTENTS = ("x", "text", "random")
DEFAULT_CONTENT = "x"
POOL_BYTES = 64 * 1024  # twice the largest deflate window
MIN_POOL = 16
_WORDS = (
    "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "user", "id", "room",
    "message", "status", "ok", "price", "update", "event", "time", "value", "name", "type",
    "data", "order", "open", "close", "buy", "sell", "level", "score", "player", "move",
    "left", "right", "up", "down", "start", "stop", "count", "total", "chat", "hello", "world",
)  # fmt: skip


def help_text() -> str:
    return ("Message contents (matters with --ws-compression deflate): x, one byte repeated "
            "(default); text, ASCII words (compressible); random, random bytes (random "
            "base64 letters with text frames)")  # fmt: skip


def _one(content: str, size: int, text: bool, rng: random.Random) -> bytes:
    if content == "x":
        return b"x" * size
    if content == "random":
        raw = rng.randbytes(size)
        return base64.b64encode(raw)[:size] if text else raw
    words: list[str] = []
    length = 0
    while length <= size:
        word = rng.choice(_WORDS)
        words.append(word)
        length += len(word) + 1
    return " ".join(words).encode()[:size]


@functools.lru_cache(maxsize=16)
def pool(content: str, size: int, text: bool) -> tuple[bytes, ...]:
    """Distinct payloads of `size` bytes, together more than POOL_BYTES (one for `x`)."""
    if content not in CONTENTS:
        raise ValueError(f"payload content must be one of {', '.join(CONTENTS)}, got {content!r}")
    if content == "x":
        return (b"x" * size,)
    rng = random.Random(os.urandom(8))
    count = max(MIN_POOL, -(-POOL_BYTES // size))
    return tuple(_one(content, size, text, rng) for _ in range(count))


class Messages:
    """This connection's messages: the process's pool, from a random place, round and round
    (an index, not itertools.cycle, which would keep its own copy of the pool's references)."""

    __slots__ = ("payloads", "_next")

    def __init__(self, content: str, size: int, text: bool) -> None:
        self.payloads = pool(content, size, text)
        self._next = random.randrange(len(self.payloads))

    def next(self) -> bytes:
        payloads, n = self.payloads, self._next
        self._next = n + 1 if n + 1 < len(payloads) else 0
        return payloads[n]
