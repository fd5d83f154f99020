"""Deliberate crash points, used by the reliability tests to SIGKILL a worker at an exact step.

``fault_point`` names the point, optionally with the hit on which to die: ``executor.after_batch_write@3``
kills the process the third time it passes that point (the first time without ``@n``).
"""
from __future__ import annotations

import os
import signal
import sys
from collections import Counter

from services.core.settings import Settings

_hits: Counter = Counter()


def crash_point(settings: Settings, name: str) -> None:
    _maybe_die(settings.fault_point, name)


def crash_point_from_env(name: str) -> None:
    """For libraries that get no settings (the executor's writers): the worker's AIETL_FAULT_POINT."""
    _maybe_die(os.environ.get("AIETL_FAULT_POINT"), name)


def _maybe_die(fault_point, name: str) -> None:
    if not fault_point:
        return
    point, _, nth = fault_point.partition("@")
    if point != name:
        return
    _hits[name] += 1
    if _hits[name] >= int(nth or 1):
        print(f"fault point {fault_point} reached: SIGKILL", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
