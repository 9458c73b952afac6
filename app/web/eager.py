"""Run a coroutine on the spot until it really has to wait (what asyncio's eager tasks do in Python 3.12+).

The /ws fan-out sends one message to a thousand sockets per diffusion step. Almost every send finishes
without waiting (the transport buffers the frame), so handing each one to a task costs a wake-up per
socket for nothing. `start_eagerly` runs the send right away and only hands over what is left when
the coroutine suspends (the client stopped reading and the transport paused).
"""
from __future__ import annotations

from collections.abc import Coroutine, Generator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Suspended(Generic[T]):
    """The rest of a coroutine that `start_eagerly` began: await it (once) to run it to its end."""

    def __init__(self, coroutine: Coroutine[Any, Any, T], waiting_on: Any) -> None:
        self._coroutine = coroutine
        self._waiting_on = waiting_on

    def __await__(self) -> Generator[Any, Any, T]:
        coroutine, waiting_on = self._coroutine, self._waiting_on
        while True:
            try:
                sent = yield waiting_on  # the future the coroutine waits on goes up to the task
            except GeneratorExit:
                coroutine.close()
                raise
            except BaseException as error:  # cancellation and the like go down into the coroutine
                step = coroutine.throw
                argument: Any = error
            else:
                step = coroutine.send
                argument = sent
            try:
                waiting_on = step(argument)
            except StopIteration as finished:
                return finished.value


def start_eagerly(coroutine: Coroutine[Any, Any, T]) -> Suspended[T] | None:
    """Run `coroutine` until it finishes (None; its return value is dropped) or first suspends (the rest).

    Exceptions it raises before suspending propagate to the caller.
    """
    try:
        waiting_on = coroutine.send(None)
    except StopIteration:
        return None
    return Suspended(coroutine, waiting_on)
