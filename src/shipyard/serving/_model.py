"""The served model: one registered version, loaded once, predicting batches of requests.

:meth:`ServedModel.predict_requests` is the micro-batcher's handler. It runs in the predict
thread: it joins the requests' columns, enforces the signature once for the whole batch,
calls the flavor, and splits the outputs back. When the joined batch fails (one request
with a bad value), it retries request by request, so only the bad request gets the error.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shipyard import errors

if TYPE_CHECKING:
    import numpy as np

    from shipyard.client import Client
    from shipyard.models import LoadedModel, Signature

__all__ = ["ServedModel", "PredictionRequest", "PredictionResult", "resolve_model_ref",
           "new_prediction_ids"]


def resolve_model_ref(ref: str) -> str:
    """A ``models:/`` (or ``runs:/``) URI from ``name@alias``, ``name/version`` or ``name``.

    A bare name means the newest ready version (``models:/name/latest``).
    """
    ref = ref.strip()
    if ref.startswith(("models:/", "runs:/")):
        return ref
    if "@" in ref or "/" in ref:
        return f"models:/{ref}"
    return f"models:/{ref}/latest"


def new_prediction_ids(n: int) -> list[str]:
    """``n`` random UUID4s as 32 hex digits, generated in one go (one uuid4 call is ~1 µs)."""
    import numpy as np

    raw = np.frombuffer(os.urandom(16 * n), dtype=np.uint8).reshape(n, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    text = raw.tobytes().hex()
    return [text[i:i + 32] for i in range(0, 32 * n, 32)]


@dataclass(eq=False)
class PredictionRequest:
    """One caller's input: ``data`` is a dict of columns or an array of rows."""

    data: Any
    rows: int
    want_proba: bool = True
    endpoint: str = "predict"
    request_id: str = ""
    started: float = field(default_factory=time.perf_counter)

    @property
    def key(self) -> Any:
        """Requests with the same key can be joined into one frame."""
        if isinstance(self.data, dict):
            return tuple(self.data)
        return ("<array>", self.data.shape[1:])


@dataclass(frozen=True)
class PredictionResult:
    predictions: np.ndarray
    probabilities: np.ndarray | None
    prediction_ids: list[str]


#: Called with every predicted batch: (joined model input, requests, outputs).
BatchListener = Callable[[Any, Sequence[PredictionRequest], Sequence[PredictionResult]], None]


class ServedModel:
    """A loaded model version and what the server needs to know about it."""

    def __init__(self, loaded: LoadedModel, *, name: str, version: int | None,
                 uri: str) -> None:
        from shipyard.models import get_flavor

        self.loaded = loaded
        self.name = name
        self.version = version
        self.uri = uri
        self.digest = loaded.digest
        self._flavor = get_flavor(loaded.flavor)
        self._options = loaded.manifest.flavor_options

    @classmethod
    def load(cls, ref: str, client: Client | None = None) -> ServedModel:
        """Resolve ``ref`` to one version (an alias is pinned now) and load it."""
        from shipyard.client import Client
        from shipyard.registry import parse_model_uri

        registry = (client or Client()).registry
        uri = resolve_model_ref(ref)
        parsed = parse_model_uri(uri)
        if parsed.kind == "run":
            return cls(registry.load_model(uri), name=parsed.path or "model", version=None,
                       uri=uri)
        version = registry.resolve(uri)
        pinned = version.uri
        return cls(registry.load_model(pinned), name=version.name, version=version.version,
                   uri=pinned)

    # -- what the model takes and returns ------------------------------------------------

    @property
    def flavor(self) -> str:
        return self.loaded.flavor

    @property
    def signature(self) -> Signature | None:
        return self.loaded.signature

    @property
    def columns(self) -> list[str] | None:
        """The input column names of a columnar signature (None otherwise)."""
        sig = self.signature
        if sig is not None and isinstance(sig.inputs, list):
            return [c.name for c in sig.inputs]
        return None

    @property
    def has_proba(self) -> bool:
        return bool(self.loaded.manifest.has_predict_proba)

    @property
    def classes(self) -> list[Any] | None:
        """The class labels of a classifier (``classes_``), as plain Python values."""
        found = getattr(self.loaded.native, "classes_", None)
        if found is None:
            return None
        return [c.item() if hasattr(c, "item") else c for c in found]

    @property
    def version_label(self) -> str:
        return str(self.version) if self.version is not None else "run"

    # -- checks on the event loop: cheap and structural ----------------------------------

    def joinable(self, data: Any) -> bool:
        """Whether ``data`` (a dict of columns) has the signature's columns, so that it can
        join a batch. Reorders the columns, and drops extra ones when the signature does."""
        columns = self.columns
        if columns is None or not isinstance(data, dict):
            return True
        sig = self.signature
        assert sig is not None
        given = list(data)
        if given == columns:
            return True
        missing = [c for c in columns if c not in data]
        extra = [c for c in given if c not in columns]
        if missing or (extra and sig.extra_columns == "error"):
            return False
        for name in extra:  # extra_columns="drop": the signature drops them anyway
            del data[name]
        reordered = {c: data[c] for c in columns}  # same names, maybe another order
        data.clear()
        data.update(reordered)
        return True

    def enforce(self, data: Any) -> Any:
        """The model input for ``data`` (InvalidInput naming every problem)."""
        sig = self.signature
        if sig is not None:
            return sig.enforce(_frame(data) if isinstance(data, dict) else data)
        return _frame(data) if isinstance(data, dict) else data

    # -- the batch handler (predict thread) ----------------------------------------------

    def predict_requests(self, requests: list[PredictionRequest],
                         listener: BatchListener | None = None,
                         ) -> list[PredictionResult | BaseException]:
        """One result (or the error for it) per request; same-shaped requests in one call.

        ``listener`` sees every predicted group (the prediction log).
        """
        results: list[PredictionResult | BaseException] = [None] * len(requests)  # type: ignore[list-item]
        groups: dict[Any, list[int]] = {}
        for i, req in enumerate(requests):
            groups.setdefault(req.key, []).append(i)
        for indexes in groups.values():
            group = [requests[i] for i in indexes]
            for i, result in zip(indexes, self._predict_group(group, listener), strict=True):
                results[i] = result
        return results

    def _predict_group(self, group: list[PredictionRequest],
                       listener: BatchListener | None = None,
                       ) -> list[PredictionResult | BaseException]:
        try:
            model_input = self.enforce(_join([r.data for r in group]))
            outputs = self.call_model(model_input, sum(r.rows for r in group),
                                      want_proba=any(r.want_proba for r in group))
        except Exception as exc:  # noqa: BLE001 - retried alone to find the culprit
            if len(group) == 1:
                return [_as_request_error(exc)]
            return [self._predict_group([r], listener)[0] for r in group]
        preds, proba = outputs
        ids = new_prediction_ids(len(preds))
        results: list[PredictionResult | BaseException] = []
        start = 0
        for req in group:
            end = start + req.rows
            results.append(PredictionResult(
                preds[start:end], proba[start:end] if proba is not None and req.want_proba
                else None, ids[start:end]))
            start = end
        if listener is not None:
            listener(model_input, group, results)  # type: ignore[arg-type]
        return results

    def call_model(self, model_input: Any, rows: int, *,
                   want_proba: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """The flavor's predict (and predict_proba) on an already enforced input."""
        preds = _as_array(self._flavor.predict(self.loaded.native, model_input, self._options))
        if len(preds) != rows:
            raise RuntimeError(f"the model returned {len(preds)} predictions for {rows} rows")
        proba = None
        if want_proba and self.has_proba:
            proba = _as_array(self._flavor.predict_proba(self.loaded.native, model_input,
                                                         self._options))
        return preds, proba

    def predict(self, data: Any, *, proba: bool = True) -> PredictionResult:
        """Predict ``data`` (a dict of columns, a DataFrame or an array) in this thread."""
        import pandas as pd

        if isinstance(data, pd.DataFrame):
            data = {str(c): data[c].to_numpy() for c in data.columns}
        rows = len(next(iter(data.values()))) if isinstance(data, dict) else len(data)
        result = self._predict_group([PredictionRequest(data, rows, want_proba=proba)])[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def __repr__(self) -> str:
        return f"<ServedModel {self.name} v{self.version_label} {self.flavor}>"


def _join(parts: list[Any]) -> Any:
    """One input from several requests' inputs (dicts of columns or arrays)."""
    import numpy as np

    if len(parts) == 1:
        return parts[0]
    if not isinstance(parts[0], dict):
        return np.concatenate(parts)
    joined: dict[str, Any] = {}
    for name in parts[0]:
        values = [p[name] for p in parts]
        if all(isinstance(v, np.ndarray) for v in values):
            joined[name] = np.concatenate(values)
        else:  # lists from JSON: pandas infers one type from all of them, as for one request
            joined[name] = list(itertools.chain.from_iterable(
                v.tolist() if isinstance(v, np.ndarray) else v for v in values))
    return joined


def _frame(columns: dict[str, Any]) -> Any:
    import pandas as pd

    try:
        return pd.DataFrame(columns)
    except ValueError as exc:
        raise errors.InvalidInput(f"columns of different lengths: {exc}",
                                  field="inputs") from exc


def _as_array(output: Any) -> np.ndarray:
    import numpy as np

    if hasattr(output, "to_numpy"):
        output = output.to_numpy()
    arr = np.asarray(output)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    return np.ascontiguousarray(arr)


def _as_request_error(exc: Exception) -> BaseException:
    """Errors of the model on one request's (signature-checked) input: bad input, 400."""
    if isinstance(exc, errors.ShipyardError):
        return exc
    if isinstance(exc, ValueError | TypeError | KeyError):
        return errors.InvalidInput(f"the model rejected the input: {type(exc).__name__}: "
                                   f"{str(exc)[:500]}", field="inputs")
    return exc
