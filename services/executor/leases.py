"""Per-pipeline leases in Redis, so several executor instances never run the same pipeline at once.

Every instance folds the whole log and knows every unfinished run; the one holding a pipeline's lease runs
it (its queued runs, its stream). A lease is a key with a TTL, renewed while held: when an instance dies,
its leases expire and another instance takes the pipelines over, resuming their runs from the log. An
instance restarted under the same ``instance_id`` (by default the host name) takes its own leases back at
once, so a single executor resumes immediately after a crash.
"""
from __future__ import annotations

import threading

# Renew only if we still own it; delete only if we still own it (a compare-and-set in one round trip).
_RENEW = """if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"""
_RELEASE = """if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1]) else return 0 end"""


class Leases:
    def __init__(self, redis_client, prefix: str, owner: str, ttl_s: float):
        self.redis, self.prefix, self.owner = redis_client, prefix, owner
        self.ttl_ms = max(1000, int(ttl_s * 1000))
        self._held: set[str] = set()
        # acquire/release run in to_thread workers while renew_all runs in another: every touch of the
        # set goes through this lock (iterating it while another thread changed it killed the executor).
        self._lock = threading.Lock()

    def _key(self, pipeline_id: str) -> str:
        return f"{self.prefix}executor:lease:{pipeline_id}"

    def acquire(self, pipeline_id: str) -> bool:
        key = self._key(pipeline_id)
        # The round trips happen under the lock too: each operation and its bookkeeping are one step, so
        # what this instance believes it holds is what Redis says it owns.
        with self._lock:
            ok = self.redis.set(key, self.owner, nx=True, px=self.ttl_ms) or bool(
                self.redis.eval(_RENEW, 1, key, self.owner, self.ttl_ms))
            if ok:
                self._held.add(pipeline_id)
            else:
                self._held.discard(pipeline_id)
        return bool(ok)

    @property
    def held(self) -> frozenset[str]:
        """A snapshot of the pipelines whose lease this instance holds."""
        with self._lock:
            return frozenset(self._held)

    def holds(self, pipeline_id: str) -> bool:
        with self._lock:
            return pipeline_id in self._held

    def renew_all(self) -> set[str]:
        """Renews every lease held; returns the pipelines whose lease was lost (e.g. after a long pause).

        The lock is held across the round trips so that a concurrent acquire or release of the same
        pipeline cannot be undone by this renewal's verdict (renewals are one round trip per lease).
        """
        with self._lock:
            lost = {p for p in self._held
                    if not self.redis.eval(_RENEW, 1, self._key(p), self.owner, self.ttl_ms)}
            self._held -= lost
        return lost

    def release(self, pipeline_id: str) -> None:
        with self._lock:
            self.redis.eval(_RELEASE, 1, self._key(pipeline_id), self.owner)
            self._held.discard(pipeline_id)

    def owner_of(self, pipeline_id: str):
        raw = self.redis.get(self._key(pipeline_id))
        return raw.decode() if isinstance(raw, bytes) else raw
