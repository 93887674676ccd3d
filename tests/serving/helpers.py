"""Model classes for serving tests (module level, so that pickled pyfunc models load)."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np


class SlowModel:
    """Sums its columns after sleeping ``delay`` seconds per call (a slow model)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    def predict(self, data: Any) -> np.ndarray:
        time.sleep(self.delay)
        return np.asarray(data, dtype=np.float64).sum(axis=1)


class FailOnNegative:
    """Doubles ``x``; raises ValueError when a value is negative (a model-side input check)."""

    def predict(self, data: Any) -> np.ndarray:
        values = np.asarray(data["x"], dtype=np.float64)
        if (values < 0).any():
            raise ValueError("x must not be negative")
        return values * 2


class Switchable:
    """Sums its columns; raises while the class attribute ``broken`` is set (a model that
    fails to warm up, toggled by the test in this process)."""

    broken = False

    def predict(self, data: Any) -> np.ndarray:
        if Switchable.broken:
            raise RuntimeError("this model is broken")
        return np.asarray(data, dtype=np.float64).sum(axis=1)


class Gated:
    """Sums its columns once the class-level ``gate`` is open (a model call held in flight)."""

    gate = threading.Event()

    def predict(self, data: Any) -> np.ndarray:
        if not Gated.gate.wait(30):
            raise RuntimeError("the gate was never opened")
        return np.asarray(data, dtype=np.float64).sum(axis=1)
