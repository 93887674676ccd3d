"""Plain Python: any object with ``predict`` (and optionally ``predict_proba``), or a function.

The object is pickled; its class must be importable where the model is loaded.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

NAME = "pyfunc"
PACKAGES: tuple[str, ...] = ()
EXTRA = "core"
_FILE = "model.pkl"


class FunctionModel:
    """Wraps a plain function ``f(DataFrame) -> predictions`` as a model."""

    def __init__(self, func: Any) -> None:
        self.func = func

    def predict(self, data: Any) -> Any:
        return self.func(data)


def matches(model: Any) -> bool:
    return callable(getattr(model, "predict", None)) or callable(model)


def save(model: Any, path: Path) -> dict[str, Any]:
    obj = model if callable(getattr(model, "predict", None)) else FunctionModel(model)
    try:
        payload = pickle.dumps(obj, protocol=5)
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        from shipyard import errors

        raise errors.InvalidInput(
            f"cannot pickle {type(model).__qualname__}: define it at module level "
            f"(lambdas and local classes cannot be saved): {exc}", field="model") from exc
    (path / _FILE).write_bytes(payload)
    return {"file": _FILE, "class": f"{type(obj).__module__}.{type(obj).__qualname__}"}


def load(path: Path, options: dict[str, Any]) -> Any:
    return pickle.loads((path / options["file"]).read_bytes())  # noqa: S301 - verified artifact


def predict(native: Any, data: Any, options: dict[str, Any]) -> Any:
    return native.predict(data)


def has_proba(native: Any, options: dict[str, Any]) -> bool:
    return callable(getattr(native, "predict_proba", None))


def predict_proba(native: Any, data: Any, options: dict[str, Any]) -> Any:
    return native.predict_proba(data)
