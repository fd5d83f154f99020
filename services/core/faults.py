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
    if not settings.fault_point:
        return
    point, _, nth = settings.fault_point.partition("@")
    if point != name:
        return
    _hits[name] += 1
    if _hits[name] >= int(nth or 1):
        print(f"fault point {settings.fault_point} reached: SIGKILL", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
