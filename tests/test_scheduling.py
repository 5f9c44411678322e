"""How a batch's work is scheduled in one process: the collector paused while it is in flight, one batch
preparing at a time, the concurrency window served earliest run first."""

import asyncio
import gc
import os
import threading

import pytest

from mapgen.llms._window import Window
from mapgen.runtime import gc_pause, turns


def test_the_collector_is_paused_while_any_batch_is_in_flight_and_resumed_after_the_last():
    entered, leave = threading.Event(), threading.Event()

    def batch():
        with gc_pause.paused():
            entered.set()
            leave.wait(10)

    other = threading.Thread(target=batch)
    with gc_pause.paused():
        other.start()
        assert entered.wait(10)
    assert not gc.isenabled()  # the other batch is still in flight
    leave.set()
    other.join(10)
    assert gc.isenabled()


def test_a_caller_that_turned_the_collector_off_keeps_it_off():
    gc.disable()
    try:
        with gc_pause.paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_a_worker_forked_during_a_batch_has_the_collector_on():
    read, write = os.pipe()
    with gc_pause.paused():
        pid = os.fork()
        if pid == 0:  # the child: report, and leave without running the parent's cleanup
            os.write(write, b"1" if gc.isenabled() else b"0")
            os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1"


def test_one_batch_prepares_at_a_time_and_the_next_starts_when_it_hands_over():
    order = []
    second_waiting = threading.Event()

    def second():
        second_waiting.set()
        with turns.turn():
            order.append("second prepares")

    with turns.turn():
        thread = threading.Thread(target=second)
        thread.start()
        assert second_waiting.wait(10)
        thread.join(0.2)
        assert thread.is_alive() and order == []  # blocked while the first prepares
        order.append("first hands over")
        turns.handing_over()
        thread.join(10)
    assert order == ["first hands over", "second prepares"]


def test_the_window_serves_the_earliest_run_first_and_passes_on_a_slot_a_cancelled_waiter_got():
    async def main():
        window, served = Window(1), []
        await window.acquire(0)

        async def ask(priority):
            await window.acquire(priority)
            served.append(priority)
            window.release()

        late = asyncio.ensure_future(ask(5))
        cancelled = asyncio.ensure_future(window.acquire(1))
        early = asyncio.ensure_future(ask(2))
        await asyncio.sleep(0)
        window.release()  # handed to priority 1, which is cancelled before it resumes
        cancelled.cancel()
        await asyncio.gather(late, early)
        await asyncio.wait_for(window.acquire(0), 5)  # every slot came back
        return served

    assert asyncio.run(main()) == [2, 5]
