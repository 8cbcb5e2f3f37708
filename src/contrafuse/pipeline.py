"""Overlapping reading, computing and writing: the engine of folder mode, ``bench`` and video.

:func:`run_batched` takes items (pairs, frames) through three stages on small thread pools:

* ``load(item)`` on reader threads (decode the files, prepare the luma);
* ``compute(batch)`` on worker threads, for batches of up to ``batch_size`` loaded items that
  share a ``key`` (the image size: only same-size images stack into one tensor);
* ``store(item, loaded, result)`` on writer threads (colour, encoding, the atomic write).

Memory is bounded: at most ``max_in_flight`` items are between ``load`` and the end of
``store``. Items wait for same-size partners only while that bound allows; a batch is started
early when no more partners can arrive. Batches are formed in item order, so the same input
gives the same batches on every run.

A :class:`~contrafuse.errors.ContrafuseError` raised by a stage is that item's outcome (or every
item's of the batch, for ``compute``) and the others go on; any other exception stops the run
and propagates after the threads have finished what they were doing. NumPy, PIL and PyTorch
release the GIL in their heavy loops, which is what makes threads enough here.
"""
from __future__ import annotations

import queue
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .errors import ContrafuseError

Item = TypeVar("Item")


@dataclass
class Outcome(Generic[Item]):
    """What became of one item: ``value`` from ``store``, or the ``error`` that stopped it."""

    item: Item
    value: Any = None
    error: ContrafuseError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class InlineExecutor(Executor):
    """Runs each task at submission, in the calling thread (the stage's pool of zero threads)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to whoever reads the future
            future.set_exception(exc)
        return future


def _pool(threads: int, name: str) -> Executor:
    return ThreadPoolExecutor(threads, thread_name_prefix=f"contrafuse-{name}") if threads > 0 else InlineExecutor()


def _result(future: Future) -> tuple[Any, ContrafuseError | None]:
    """A finished future's value, or its ContrafuseError; any other exception propagates."""
    exc = future.exception()
    if exc is None:
        return future.result(), None
    if isinstance(exc, ContrafuseError):
        return None, exc
    raise exc


def run_batched(
    items: Iterable[Item],
    *,
    load: Callable[[Item], Any],
    compute: Callable[[list[Any]], list[Any]],
    store: Callable[[Item, Any, Any], Any],
    key: Callable[[Any], Hashable] = lambda loaded: None,
    batch_size: int = 1,
    workers: int = 1,
    readers: int = 2,
    writers: int = 2,
    max_in_flight: int | None = None,
) -> Iterator[Outcome[Item]]:
    """Run ``items`` through load, batched compute and store; yield one :class:`Outcome` per item.

    Args:
        items: consumed lazily in the calling thread (wrap a slow generator in :func:`prefetched`).
        load, compute, store, key: the stages (see the module docstring); ``compute`` returns
            one result per loaded item, in order.
        batch_size: most items per ``compute`` call.
        workers, readers, writers: threads per stage; 0 readers or writers runs that stage in
            the calling thread (0 of both and one worker: the plain sequential loop).
        max_in_flight: bound on items between ``load`` and the end of ``store`` (default: enough
            for every worker to have a batch running and one waiting, plus one batch of
            look-ahead for same-size partners).

    Outcomes come in the order their ``store`` finished (per writer thread: batch order).
    """
    if batch_size < 1 or workers < 1:
        raise ValueError(f"batch_size and workers must be >= 1, got {batch_size} and {workers}")
    limit = max_in_flight or batch_size * (2 * workers + 1) + max(readers, writers)
    source = iter(items)
    pools = {"read": _pool(readers, "read"), "fuse": _pool(workers, "fuse"), "write": _pool(writers, "write")}
    loads: deque[tuple[Item, Future]] = deque()
    buckets: OrderedDict[Hashable, list[tuple[Item, Any]]] = OrderedDict()
    computes: deque[tuple[list[tuple[Item, Any]], Future]] = deque()
    stores: deque[tuple[Item, Future]] = deque()
    in_flight, exhausted = 0, False

    def start_batch(batch_key: Hashable) -> None:
        batch = buckets.pop(batch_key)
        computes.append((batch, pools["fuse"].submit(compute, [loaded for _, loaded in batch])))

    try:
        while True:
            while not exhausted and in_flight < limit:
                item = next(source, _END)
                if item is _END:
                    exhausted = True
                    break
                loads.append((item, pools["read"].submit(load, item)))
                in_flight += 1
            while loads and loads[0][1].done():
                item, future = loads.popleft()
                loaded, error = _result(future)
                if error is not None:
                    in_flight -= 1
                    yield Outcome(item, error=error)
                    continue
                bucket_key = key(loaded)
                buckets.setdefault(bucket_key, []).append((item, loaded))
                if len(buckets[bucket_key]) >= batch_size:
                    start_batch(bucket_key)
            if buckets and not loads and (exhausted or in_flight >= limit):
                start_batch(next(iter(buckets)))  # no partner can arrive: start the oldest bucket
            while computes and computes[0][1].done():
                batch, future = computes.popleft()
                results, error = _result(future)
                if error is not None:
                    in_flight -= len(batch)
                    for item, _ in batch:
                        yield Outcome(item, error=error)
                    continue
                for (item, loaded), result in zip(batch, results):
                    stores.append((item, pools["write"].submit(store, item, loaded, result)))
            while stores and stores[0][1].done():
                item, future = stores.popleft()
                value, error = _result(future)
                in_flight -= 1
                yield Outcome(item, value=value, error=error)
            heads = [queue_[0][1] for queue_ in (loads, computes, stores) if queue_]
            if not heads:
                if exhausted and not buckets:
                    return
                continue
            wait(heads, return_when=FIRST_COMPLETED)
    finally:
        for pool in pools.values():
            pool.shutdown(wait=True, cancel_futures=True)


_END = object()


def prefetched(iterable: Iterable[Item], depth: int = 4) -> Iterator[Item]:
    """Iterate ``iterable`` on a background thread, up to ``depth`` items ahead (e.g. decoding).

    An exception raised by the iterable is re-raised here, at the item where it happened.
    Stopping early (closing this generator) stops the thread after its current item.
    """
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for element in iterable:
                while not stop.is_set():
                    try:
                        slots.put((element, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slots.put((_END, None))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
            slots.put((_END, exc))

    thread = threading.Thread(target=produce, name="contrafuse-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            element, exc = slots.get()
            if exc is not None:
                raise exc
            if element is _END:
                return
            yield element
    finally:
        stop.set()
        while thread.is_alive():
            try:
                slots.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.1)
