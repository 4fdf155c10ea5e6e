"""Idle CPUs poll while a pinned point runs: the wake-up latency request, held and let go."""

from __future__ import annotations

import os

import pytest

from harness import idle

needs_the_device = pytest.mark.skipif(
    os.geteuid() != 0 or not idle.DEVICE.exists(), reason="needs root and /dev/cpu_dma_latency"
)


@needs_the_device
def test_the_request_is_held_for_the_block_and_let_go_after() -> None:
    before = idle.current_request_us()
    assert before is not None and before > idle.WAKE_LATENCY_US
    with idle.polling(True) as held:
        assert held is not None and held["cpu_dma_latency_us"] == idle.WAKE_LATENCY_US
        assert held["cpuidle_driver"] == idle.cpuidle_driver()
        assert idle.current_request_us() == idle.WAKE_LATENCY_US
    assert idle.current_request_us() == before


@needs_the_device
def test_the_request_is_let_go_when_the_block_fails() -> None:
    before = idle.current_request_us()
    with pytest.raises(RuntimeError), idle.polling(True):
        assert idle.current_request_us() == idle.WAKE_LATENCY_US
        raise RuntimeError("a point that failed")
    assert idle.current_request_us() == before


def test_an_unpinned_point_asks_nothing() -> None:
    before = idle.current_request_us()
    with idle.polling(False) as held:
        assert held is None
        assert idle.current_request_us() == before
