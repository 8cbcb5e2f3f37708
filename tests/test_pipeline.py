"""The threaded batch pipeline: batches by key, bounded memory, per-item failures, order, prefetching."""
from __future__ import annotations

import threading
import time

import pytest

from contrafuse.errors import ContrafuseError
from contrafuse.pipeline import prefetched, run_batched


def _run(items, **kwargs):
    batches = []

    def compute(batch):
        batches.append([x for x in batch])
        return [x * 10 for x in batch]

    outcomes = list(run_batched(items, load=lambda x: x, compute=compute, store=lambda item, loaded, result: result,
                                **kwargs))
    return outcomes, batches


@pytest.mark.parametrize("threads", [0, 2])
def test_every_item_comes_out_once_with_its_result(threads):
    outcomes, _ = _run(range(23), batch_size=4, workers=2 if threads else 1, readers=threads, writers=threads)
    assert sorted((o.item, o.value) for o in outcomes) == [(i, 10 * i) for i in range(23)]
    assert all(o.ok for o in outcomes)


def test_batches_hold_only_items_of_one_key_and_follow_item_order():
    outcomes, batches = _run(range(12), key=lambda x: x % 3, batch_size=4, workers=1, readers=0, writers=0,
                             max_in_flight=12)
    assert batches == [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8, 11]]


def test_a_bucket_starts_early_when_the_memory_bound_is_reached():
    _, batches = _run(range(6), key=lambda x: x % 2, batch_size=3, workers=1, readers=0, writers=0, max_in_flight=2)
    assert all(len(b) <= 2 for b in batches) and sorted(sum(batches, [])) == list(range(6))


def test_items_in_flight_never_exceed_the_bound():
    lock, state = threading.Lock(), {"now": 0, "most": 0}

    def load(x):
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        return x

    def store(item, loaded, result):
        time.sleep(0.002)
        with lock:
            state["now"] -= 1

    outcomes = list(run_batched(range(40), load=load, compute=lambda b: b, store=store, batch_size=2, workers=2,
                                readers=3, writers=3, max_in_flight=5))
    assert len(outcomes) == 40 and state["most"] <= 5


def test_a_failing_item_is_its_own_outcome_and_the_others_go_on():
    def load(x):
        if x == 3:
            raise ContrafuseError("item 3 is broken")
        return x

    outcomes = list(run_batched(range(6), load=load, compute=lambda b: b, store=lambda i, l, r: r, batch_size=2,
                                workers=2, readers=2, writers=2))
    failed = [o for o in outcomes if not o.ok]
    assert [o.item for o in failed] == [3] and "item 3 is broken" in str(failed[0].error)
    assert sorted(o.value for o in outcomes if o.ok) == [0, 1, 2, 4, 5]


def test_a_failing_batch_fails_its_items_and_a_failing_store_only_its_own():
    def compute(batch):
        if 0 in batch:
            raise ContrafuseError("no zeros")
        return batch

    def store(item, loaded, result):
        if item == 5:
            raise ContrafuseError("disk full")
        return result

    outcomes = {o.item: o for o in run_batched(range(6), load=lambda x: x, compute=compute, store=store, batch_size=2,
                                               workers=1, readers=1, writers=1)}
    assert {i for i, o in outcomes.items() if not o.ok} == {0, 1, 5}
    assert "disk full" in str(outcomes[5].error)


def test_an_unexpected_exception_stops_the_run():
    def compute(batch):
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError, match="bug"):
        list(run_batched(range(10), load=lambda x: x, compute=compute, store=lambda i, l, r: r, workers=2))


def test_prefetched_reads_ahead_in_order_and_reraises():
    assert list(prefetched(iter(range(50)), depth=3)) == list(range(50))

    def broken():
        yield 1
        raise ValueError("decoder failed")

    got = []
    with pytest.raises(ValueError, match="decoder failed"):
        for x in prefetched(broken()):
            got.append(x)
    assert got == [1]


def test_prefetched_stops_its_thread_when_closed_early():
    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    stream = prefetched(endless(), depth=2)
    assert next(stream) == 0
    stream.close()
    count = len(produced)
    time.sleep(0.3)
    assert len(produced) == count and count <= 5
