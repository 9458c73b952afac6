"""Sends go out on the spot while a socket keeps up, and queue (in order, coalesced) once one has to wait;
bus events reach many sockets through the chunked fan-out, a newer step replacing one not yet sent.

`PausableSocket` stands in for Starlette's WebSocket the way uvicorn behaves under it: `send_text`
returns at once while the transport takes bytes and waits while the transport is paused.
"""
from __future__ import annotations

import asyncio
import json

import pytest

from app.protocol import GenerationError, GenerationProgress
from app.web.delivery import TOO_SLOW_CLOSE_CODE, Connection, FanOut
from app.web.eager import start_eagerly


class PausableSocket:
    def __init__(self) -> None:
        self.sent: list[str] = []
        self.closed_with: tuple[int, str] | None = None
        self.resumed = asyncio.Event()
        self.resumed.set()
        self._each_send = asyncio.Event()

    async def send_text(self, text: str) -> None:
        await self.resumed.wait()
        self.sent.append(text)
        self._each_send.set()

    async def wait_until_sent(self, count: int) -> None:
        while len(self.sent) < count:
            self._each_send.clear()
            await self._each_send.wait()

    async def close(self, code: int, reason: str) -> None:
        self.closed_with = (code, reason)


async def test_a_coroutine_that_never_waits_runs_to_its_end_on_the_spot():
    ran = []

    async def work() -> None:
        ran.append("done")

    assert start_eagerly(work()) is None
    assert ran == ["done"]


async def test_a_suspended_coroutine_finishes_when_its_rest_is_awaited_and_returns_its_value():
    gate = asyncio.get_running_loop().create_future()
    steps = []

    async def work() -> str:
        steps.append("before")
        value = await gate
        steps.append("after")
        return f"got {value}"

    rest = start_eagerly(work())
    assert rest is not None and steps == ["before"]
    task = asyncio.ensure_future(rest)
    await asyncio.sleep(0)
    assert not task.done()
    gate.set_result(7)
    assert await task == "got 7"
    assert steps == ["before", "after"]


async def test_errors_reach_the_caller_before_suspension_and_the_awaiter_after():
    async def fails_at_once() -> None:
        raise ValueError("at once")

    with pytest.raises(ValueError, match="at once"):
        start_eagerly(fails_at_once())

    gate = asyncio.get_running_loop().create_future()

    async def fails_later() -> None:
        await gate
        raise ValueError("later")

    rest = start_eagerly(fails_later())
    assert rest is not None
    gate.set_result(None)
    with pytest.raises(ValueError, match="later"):
        await rest


async def test_cancelling_the_task_that_awaits_the_rest_cancels_the_coroutine():
    gate = asyncio.get_running_loop().create_future()
    cleaned_up = []

    async def work() -> None:
        try:
            await gate
        finally:
            cleaned_up.append(True)

    rest = start_eagerly(work())
    assert rest is not None
    task = asyncio.ensure_future(rest)
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned_up == [True]


async def test_connection_sends_on_the_spot_while_the_socket_keeps_up():
    socket = PausableSocket()
    connection = Connection(socket, outbox_limit=10)  # type: ignore[arg-type]
    connection.send("a")
    connection.send("b", coalesce_key="progress:s")
    assert socket.sent == ["a", "b"]  # no task, no loop iteration needed
    assert len(connection.outbox) == 0


async def test_once_a_send_waits_later_messages_queue_in_order_and_progress_coalesces():
    socket = PausableSocket()
    connection = Connection(socket, outbox_limit=10)  # type: ignore[arg-type]
    socket.resumed.clear()  # the client stopped reading: the transport paused
    connection.send("started")
    connection.send("progress 1", coalesce_key="progress:s")
    connection.send("progress 2", coalesce_key="progress:s")
    connection.send("complete")
    assert socket.sent == [] and len(connection.outbox) == 2
    socket.resumed.set()
    await asyncio.wait_for(socket.wait_until_sent(3), 5)
    assert socket.sent == ["started", "progress 2", "complete"]
    connection.send("after")  # the sender has finished: straight out again
    assert socket.sent[-1] == "after"


async def test_a_client_too_far_behind_is_closed_with_1013_and_a_reason():
    socket = PausableSocket()
    connection = Connection(socket, outbox_limit=2)  # type: ignore[arg-type]
    socket.resumed.clear()
    for index in range(4):  # one waits in the transport, two in the outbox, the fourth overflows
        connection.send(f"message {index}")
    assert connection.closed
    await connection.wait_closing(timeout=5)
    assert socket.closed_with is not None
    code, reason = socket.closed_with
    assert code == TOO_SLOW_CLOSE_CODE and "too slow" in reason


def progress(step: int) -> GenerationProgress:
    return GenerationProgress(session_id="s", seq=step, step=step, total_steps=30, message=f"Step {step}/30")


async def test_the_fan_out_serves_a_chunk_per_loop_turn_and_later_ones_get_the_newest_step():
    fan_out = FanOut(connections_per_turn=2)
    sockets = [PausableSocket() for _ in range(5)]
    connections = [Connection(socket, 10, fan_out) for socket in sockets]  # type: ignore[arg-type]
    first = progress(1)
    for connection in connections:
        connection.on_event(first, first.model_dump_json())
    assert all(socket.sent == [] for socket in sockets)  # queued, not sent inside the bus's publish
    await sockets[1].wait_until_sent(1)  # the first chunk went out in one loop turn
    assert [len(socket.sent) for socket in sockets] == [1, 1, 0, 0, 0]

    second = progress(2)  # the next step arrives while three connections still wait for the first
    for connection in connections:
        connection.on_event(second, second.model_dump_json())
    failed = GenerationError(session_id="s", seq=3, error="boom")
    for connection in connections:
        connection.on_event(failed, failed.model_dump_json())
    await asyncio.wait_for(sockets[4].wait_until_sent(2), 5)
    steps = [[json.loads(text).get("step", json.loads(text)["type"]) for text in socket.sent] for socket in sockets]
    assert steps[:2] == [[1, 2, "generation_error"]] * 2
    assert steps[2:] == [[2, "generation_error"]] * 3  # step 1 coalesced away, the error kept
    assert len(fan_out) == 0


async def test_a_direct_answer_waits_behind_queued_events_to_keep_the_order():
    socket = PausableSocket()
    connection = Connection(socket, 10, FanOut())  # type: ignore[arg-type]
    event = progress(1)
    connection.on_event(event, event.model_dump_json())
    connection.send('{"type": "pong"}')
    await asyncio.wait_for(socket.wait_until_sent(2), 5)
    assert [json.loads(text)["type"] for text in socket.sent] == ["generation_progress", "pong"]
