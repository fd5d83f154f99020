"""Executor leases touched from several threads at once, against the real Redis.

The executor renews its leases in a worker thread while runs acquire and release them from others; the
set of held leases once changed size during the renewal's iteration and killed the executor.
"""
from __future__ import annotations

import random
import threading
import uuid

import redis

from services.core.settings import load_settings
from services.executor.leases import Leases


def _leases(owner: str, prefix: str) -> Leases:
    return Leases(redis.Redis.from_url(load_settings().redis_url), prefix, owner, ttl_s=30)


def test_renewing_while_other_threads_acquire_and_release_never_fails_and_keeps_the_truth():
    prefix = f"test-leases-{uuid.uuid4().hex[:8]}:"
    leases = _leases("executor-a", prefix)
    errors: list[BaseException] = []
    stop = threading.Event()

    def guard(fn):
        def run():
            try:
                fn()
            except BaseException as exc:  # the assertion below reports it
                errors.append(exc)
                stop.set()
        return run

    def churn(seed: int):
        rnd = random.Random(seed)
        for _ in range(1500):
            if stop.is_set():
                return
            p = f"p{rnd.randrange(40)}"
            if rnd.random() < 0.6:
                leases.acquire(p)
            else:
                leases.release(p)

    def renew():
        while not stop.is_set():
            assert leases.renew_all() == set(), "no lease can be lost: nobody else owns these keys"

    workers = [threading.Thread(target=guard(lambda s=s: churn(s))) for s in range(3)]
    renewer = threading.Thread(target=guard(renew))
    renewer.start()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    stop.set()
    renewer.join()
    try:
        assert errors == []
        # What the instance believes it holds is exactly what Redis says it owns.
        owned = {p for p in (f"p{i}" for i in range(40)) if leases.owner_of(p) == "executor-a"}
        assert set(leases.held) == owned
    finally:
        client = leases.redis
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)


def test_a_lease_held_by_another_instance_is_not_taken_and_not_believed_held():
    prefix = f"test-leases-{uuid.uuid4().hex[:8]}:"
    a, b = _leases("executor-a", prefix), _leases("executor-b", prefix)
    try:
        assert a.acquire("p1")
        assert not b.acquire("p1")
        assert not b.holds("p1") and a.holds("p1")
        b.release("p1")  # not its own: must not delete a's lease
        assert a.owner_of("p1") == "executor-a"
        assert a.renew_all() == set()
    finally:
        for key in a.redis.scan_iter(f"{prefix}*"):
            a.redis.delete(key)
