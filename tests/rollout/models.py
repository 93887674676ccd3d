"""Model classes for rollout tests (module level, so that pickled models load in workers)."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np


class Constant:
    """Predicts ``value`` for every row, with class probabilities ``[1 - p, p]``."""

    def __init__(self, value: int, p: float = 0.5) -> None:
        self.value = value
        self.p = p
        self.classes_ = np.array([0, 1])

    def predict(self, data: Any) -> np.ndarray:
        return np.full(len(data), self.value, dtype=np.int64)

    def predict_proba(self, data: Any) -> np.ndarray:
        rows = len(data)
        return np.column_stack([np.full(rows, 1 - self.p), np.full(rows, self.p)])


class FailsOnOld(Constant):
    """A challenger with a bug: a server error (RuntimeError) for any row with age > 60."""

    def predict(self, data: Any) -> np.ndarray:
        if (np.asarray(data["age"]) > 60).any():
            raise RuntimeError("age out of the range this version was trained on")
        return super().predict(data)


#: While set, every Gated model waits in its predict (a stuck shadow), up to 20 s.
HOLD = threading.Event()


class Gated(Constant):
    """Predicts like :class:`Constant`, but not while :data:`HOLD` is set."""

    def predict(self, data: Any) -> np.ndarray:
        deadline = time.monotonic() + 20
        while HOLD.is_set() and time.monotonic() < deadline:
            time.sleep(0.002)
        return super().predict(data)
