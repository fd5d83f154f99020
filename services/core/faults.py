"""Deliberate crash points, used by the reliability tests to SIGKILL a worker at an exact step."""
from __future__ import annotations

import os
import signal
import sys

from services.core.settings import Settings


def crash_point(settings: Settings, name: str) -> None:
    if settings.fault_point == name:
        print(f"fault point {name} reached: SIGKILL", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
