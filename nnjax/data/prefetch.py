"""Asynchronous prefetch (seed 002 slide 6): prepare the next batches while the device computes.

``prefetch(batches, size, place)`` runs one background thread that pulls host batches, places them
on the device (``place``, e.g. ``jax.device_put``) and keeps up to ``size`` of them in a bounded
queue, so the host -> device copy of batch i+1 overlaps the step on batch i. Order is preserved,
an exception in the producer surfaces in the consumer, and a consumer that stops early (``close()``
or garbage collection) stops the thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import jax

T = TypeVar("T")
U = TypeVar("U")

_END = object()  # the producer's last message when its iterator is exhausted


def prefetch(iterable: Iterable[T], size: int = 2, place: Callable[[T], U] = jax.device_put) -> Iterator[U]:
    """``place(item)`` for every item of ``iterable``, in order, computed up to ``size`` items ahead.

    Items are whatever ``iterable`` yields (e.g. batches: dicts of numpy arrays [B, ...]); ``place``
    keeps their shapes (``jax.device_put`` copies them to the default device). ``size=0`` is the
    plain ``map(place, iterable)`` in the calling thread. An exception raised by ``iterable`` or
    ``place`` is re-raised by the consumer (with its original traceback) when it reaches that item.
    """
    if size < 0:
        raise ValueError(f"prefetch size must be >= 0 (0: no background thread), got {size}")
    if size == 0:
        return map(place, iterable)
    return _prefetched(iter(iterable), size, place)


def _prefetched(iterator: Iterator[T], size: int, place: Callable[[T], U]) -> Iterator[U]:
    """The threaded case of ``prefetch``: a producer thread fills a ``queue.Queue(size)``."""
    items: queue.Queue[Any] = queue.Queue(size)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in iterator:
                items.put(place(item))
                if stop.is_set():
                    return
            items.put(_END)
        except BaseException as err:  # handed to the consumer, which re-raises it
            items.put(_Failure(err))

    threading.Thread(target=produce, name="nnjax-prefetch", daemon=True).start()
    try:
        while (item := items.get()) is not _END:
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        # Stop the producer: it checks ``stop`` after every put, and draining the queue frees the
        # slot its (at most one) pending put waits for.
        stop.set()
        _drain(items)


class _Failure:
    """An exception raised in the producer thread, carried through the queue to the consumer."""

    def __init__(self, error: BaseException):
        self.error = error


def _drain(items: queue.Queue[Any]) -> None:
    """Remove every item currently in ``items`` without blocking."""
    while True:
        try:
            items.get_nowait()
        except queue.Empty:
            return
