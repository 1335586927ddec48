"""A request and its stream of events, and how the engine thread hands events to asyncio.

The engine thread produces one event per new token of every active request (plus Done or Failed at
the end), so at 64 streams this is the per-token host path next to detokenization: events of one
engine iteration are collected in an `Outbox` and handed over with one `call_soon_threadsafe` per
event loop, and each request's asyncio side is an `EventQueue`: the part of asyncio.Queue one
consumer needs, at about half its cost per token.
"""
from __future__ import annotations

import asyncio
import itertools
import queue
from collections import deque
from dataclasses import dataclass

from .sampling import SamplingParams


@dataclass
class Token:
    text: str                  # text released by this token (may be "" while a stop string is possible)
    special: int | None = None  # a special token id (only when specials are not decoded as text)


@dataclass
class Done:
    finish_reason: str         # "stop" | "length" | "cancelled"
    prompt_tokens: int
    completion_tokens: int


@dataclass
class Failed:
    message: str


class EventQueue:
    """A request's events on its event loop: put_nowait() (on the loop's thread) and `await get()`,
    for one consumer. Like asyncio.Queue without maxsize, join() or several getters, whose bookkeeping
    would run once per token."""
    __slots__ = ("_items", "_waiter")

    def __init__(self):
        self._items: deque = deque()
        self._waiter: asyncio.Future | None = None

    def put_nowait(self, event) -> None:
        self._items.append(event)
        waiter = self._waiter
        if waiter is not None and not waiter.done():  # done: the consumer gave up waiting (cancelled)
            waiter.set_result(None)

    async def get(self):
        # a cancelled get() (a timeout, a client gone) leaves the items where they are
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return self._items.popleft()


_ids = itertools.count(1)


class Request:
    """One generation. Events (Token..., then Done or Failed) arrive on `events`: an EventQueue
    when `loop` is given (the server), else a thread-safe queue.SimpleQueue."""

    def __init__(self, prompt: list[int], max_tokens: int, sampling: SamplingParams = SamplingParams(),
                 stop: list[str] | tuple[str, ...] = (), stop_ids: set[int] | frozenset[int] = frozenset(),
                 specials_as_text: bool = True, loop=None, constrained: bool = False, copy=None):
        self.id = next(_ids)
        self.constrained = constrained  # an assistant turn: decode under the protocol's grammar (grammar.py)
        self.copy = copy  # a copying.CopyRule for its actions and answers (needs `constrained`), or None
        self.prompt, self.max_tokens, self.sampling = list(prompt), max_tokens, sampling
        self.stop, self.stop_ids, self.specials_as_text = list(stop), frozenset(stop_ids), specials_as_text
        self.loop = loop
        self.events = EventQueue() if loop is not None else queue.SimpleQueue()
        self.cancelled = False


class Outbox:
    """Events of one engine iteration, handed over together by flush(): one call_soon_threadsafe
    per event loop instead of one per event (each wakes the loop's selector)."""

    def __init__(self):
        self.items: list[tuple[Request, object]] = []

    def emit(self, req: Request, event) -> None:
        self.items.append((req, event))

    def flush(self) -> None:
        by_loop: dict = {}
        for req, event in self.items:
            if req.loop is None:
                req.events.put(event)
            else:
                by_loop.setdefault(req.loop, []).append((req.events, event))
        self.items = []
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_deliver, items)
            except RuntimeError:  # that event loop is closed: nobody is listening any more
                pass


def _deliver(items: list[tuple[EventQueue, object]]) -> None:
    for events, event in items:
        events.put_nowait(event)
