"""What the router remembers and writes later: its recent predictions, pending assignments
and pulls, and feedback waiting to be credited to an arm.

Nothing here touches the database on the request path: the event loop appends, and the
router's background thread takes the batches and writes them (``_router.RouterState``).
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Known", "PredictionMemory", "PendingRecords", "Credit", "same_label",
           "reward_for"]


@dataclass(frozen=True, eq=False)
class Known:
    """A prediction this worker answered: the arm, the revision, and the predicted value."""

    arm: str
    revision: int
    predictions: Any  # the answering request's prediction array
    index: int  # this prediction's row in it
    shadows: dict[str, Any] = field(default_factory=dict)  # shadow arm -> its prediction

    @property
    def prediction(self) -> Any:
        value = self.predictions[self.index]
        return value.item() if hasattr(value, "item") else value


class PredictionMemory:
    """The last ``capacity`` prediction ids this worker answered (oldest forgotten first)."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._known: collections.OrderedDict[str, Known] = collections.OrderedDict()
        self._lock = threading.Lock()

    def add(self, prediction_ids: list[str], arm: str, revision: int,
            predictions: Any) -> None:
        if self.capacity <= 0:
            return
        with self._lock:
            for i, pid in enumerate(prediction_ids):
                self._known[pid] = Known(arm, revision, predictions, i)
            while len(self._known) > self.capacity:
                self._known.popitem(last=False)

    def add_shadow(self, prediction_ids: list[str], arm: str, predictions: Any) -> None:
        """A shadow's answers to the rows the primary answered as ``prediction_ids``."""
        with self._lock:
            for i, pid in enumerate(prediction_ids):
                known = self._known.get(pid)
                if known is not None:
                    value = predictions[i]
                    known.shadows[arm] = value.item() if hasattr(value, "item") else value

    def get(self, prediction_id: str) -> Known | None:
        with self._lock:
            return self._known.get(prediction_id)

    def __len__(self) -> int:
        return len(self._known)


class PendingRecords:
    """Assignments (prediction id, arm, revision) and pulls per arm, waiting to be written.

    Bounded: past ``limit`` rows the oldest are dropped (and counted), so a database that
    is down for long cannot make the router run out of memory.
    """

    def __init__(self, limit: int = 200_000) -> None:
        self.limit = limit
        self.dropped = 0
        self._rows: list[tuple[str, str, int]] = []
        self._pulls: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def add(self, prediction_ids: list[str], arm: str, revision: int) -> None:
        with self._lock:
            self._rows.extend((pid, arm, revision) for pid in prediction_ids)
            self._pulls[arm] += len(prediction_ids)
            if len(self._rows) > self.limit:
                extra = len(self._rows) - self.limit
                del self._rows[:extra]
                self.dropped += extra

    def take(self) -> tuple[list[tuple[str, str, int]], dict[str, int]]:
        with self._lock:
            rows, self._rows = self._rows, []
            pulls, self._pulls = dict(self._pulls), collections.Counter()
        return rows, pulls

    def put_back(self, rows: list[tuple[str, str, int]], pulls: dict[str, int]) -> None:
        """A write failed: keep the batch for the next attempt (ahead of newer rows)."""
        with self._lock:
            self._rows[:0] = rows
            self._pulls.update(pulls)
            if len(self._rows) > self.limit:
                extra = len(self._rows) - self.limit
                del self._rows[:extra]
                self.dropped += extra

    def __len__(self) -> int:
        return len(self._rows)


@dataclass(frozen=True)
class Credit:
    """Feedback waiting to be credited to the arm that made the prediction."""

    prediction_id: str
    label: Any
    reward: float | None
    since: float = field(default_factory=time.monotonic)


def same_label(prediction: Any, label: Any) -> bool:
    """Whether a label (JSON: number, string, bool) names the predicted class."""
    if prediction == label:
        return True
    return str(prediction) == str(label)


def reward_for(credit: Credit, known: Known | None, field_name: str = "reward"
               ) -> float | None:
    """The reward that ``credit`` gives the arm, or None when it gives none.

    ``field_name`` is the bandit's reward (``BanditStrategy.reward``): ``"reward"`` (the
    default) takes the feedback's reward; ``"label"`` takes the label as a number (1/0,
    True/False: converted or not); ``"accuracy"`` is 1 when the label equals the prediction.
    Without the named field, a reward given is used, else correctness when the prediction
    is known here.
    """
    label = credit.label
    if field_name == "label" and isinstance(label, int | float):
        return float(label)
    correct = None if label is None or known is None else same_label(known.prediction, label)
    if field_name == "accuracy" and correct is not None:
        return 1.0 if correct else 0.0
    if credit.reward is not None:
        return float(credit.reward)
    if correct is not None:
        return 1.0 if correct else 0.0
    return None
