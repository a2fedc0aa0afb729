"""Bounded read-ahead in a helper thread: overlap producing the next item with using this one.

Used for CSV chunks (reading the next while this one is validated) and export pages (fetching
the next while this one is written). Memory stays bounded; errors reach the consumer; a
consumer that stops early stops the producer.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def read_ahead(
    make: Callable[[], Iterator[T]],
    depth: int = 1,
    *,
    after_item: Callable[[], None] | None = None,
) -> Iterator[T]:
    """The items of ``make()``, produced by a helper thread at most ``depth`` items ahead.

    Producing the next item (parsing a CSV chunk, fetching a page: code that releases the GIL)
    then overlaps consuming this one; at most ``depth`` + 1 items are in memory. Errors reach
    the consumer; when it stops early the thread ends too (after the item it is producing, if
    any). ``after_item`` runs once the consumer is done with each item.
    """
    ready: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()
    slots = threading.Semaphore(depth)  # taken to read an item, given back when it is taken
    stop = threading.Event()

    def produce() -> None:
        items: Iterator[T] | None = None
        try:
            items = make()
            while slots.acquire() and not stop.is_set():
                item = next(items, ready)  # (the queue itself marks the end)
                if item is ready:
                    ready.put((False, None))
                    return
                ready.put((True, item))
        except BaseException as exc:  # handed to the consumer, raised there
            ready.put((False, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="leadpipe-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            is_item, value = ready.get()
            slots.release()
            if not is_item:
                if value is not None:
                    raise value
                return
            yield value
            del value
            if after_item is not None:
                after_item()
    finally:
        stop.set()
        slots.release()  # wakes the thread if it waits for a slot; it then sees ``stop``
        thread.join()


def prefetched(items: Iterable[T], *, batch: int, depth: int = 2) -> Iterator[T]:
    """Iterate ``items`` from a helper thread, up to ``depth`` batches ahead of the consumer."""
    if batch < 1:
        raise ValueError("batch must be at least 1")

    def batches() -> Iterator[list[T]]:
        source = iter(items)
        try:
            while chunk := list(itertools.islice(source, batch)):
                yield chunk
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    for chunk in read_ahead(batches, depth):
        yield from chunk
