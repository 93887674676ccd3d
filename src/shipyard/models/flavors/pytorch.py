"""PyTorch ``nn.Module``: TorchScript when the module scripts, else a state dict + its class.

TorchScript (``model.pt``) needs no Python code to load. A module that ``torch.jit.script``
rejects is saved as its ``state_dict`` (``state_dict.pt``, loaded with ``weights_only``) and
a reference to its class (``module:QualName``), rebuilt with the keyword arguments in
``model._shipyard_init_kwargs`` (JSON values) when the module defines them; the class must
then be importable where the model is loaded.

Prediction runs in eval mode under ``torch.no_grad()``. A DataFrame becomes a tensor of the
module's floating dtype (float32 by default), as does a float64 array; other arrays keep
their dtype (after signature enforcement: the signature's). Outputs come back as numpy.
"""

from __future__ import annotations

import importlib
import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from shipyard import errors

from . import require

NAME = "pytorch"
PACKAGES = ("torch",)
EXTRA = "pytorch"
_SCRIPT_FILE = "model.pt"
_STATE_FILE = "state_dict.pt"
INIT_KWARGS_ATTR = "_shipyard_init_kwargs"


def _torch() -> Any:
    return require("torch", EXTRA)


@contextmanager
def _quiet_jit() -> Iterator[None]:
    """TorchScript is deprecated upstream (DeprecationWarning); it still works and loads."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def matches(model: Any) -> bool:
    return isinstance(model, _torch().nn.Module)


def save(model: Any, path: Path) -> dict[str, Any]:
    torch = _torch()
    if not isinstance(model, torch.nn.Module):
        raise errors.InvalidInput(f"the pytorch flavor saves torch.nn.Module, not "
                                  f"{type(model).__qualname__}", field="model")
    cls = type(model)
    cls_ref = f"{cls.__module__}:{cls.__qualname__}"
    try:
        with _quiet_jit():
            scripted = model if isinstance(model, torch.jit.ScriptModule) \
                else torch.jit.script(model)
            scripted.save(str(path / _SCRIPT_FILE))
    except Exception as exc:  # noqa: BLE001 - any scripting failure: fall back to state_dict
        script_error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}" \
            if str(exc).strip() else type(exc).__name__
        (path / _SCRIPT_FILE).unlink(missing_ok=True)
        return _save_state_dict(torch, model, path, cls_ref, script_error)
    return {"format": "torchscript", "file": _SCRIPT_FILE, "class": cls_ref}


def _save_state_dict(torch: Any, model: Any, path: Path, cls_ref: str,
                     script_error: str) -> dict[str, Any]:
    how = (f"torch.jit.script could not compile {cls_ref} ({script_error}), and the "
           "state-dict fallback needs")
    fix = ("Make the module scriptable (type-annotate forward, avoid unsupported Python), or "
           "define the class at module level in an importable module and set "
           f"self.{INIT_KWARGS_ATTR} = {{...}} (JSON values) in __init__ when it takes arguments")
    kwargs = getattr(model, INIT_KWARGS_ATTR, None) or {}
    if not isinstance(kwargs, dict):
        raise errors.InvalidInput(f"{how} {INIT_KWARGS_ATTR} to be a dict. {fix}", field="model")
    try:
        json.dumps(kwargs)
    except (TypeError, ValueError) as exc:
        raise errors.InvalidInput(f"{how} JSON-serializable {INIT_KWARGS_ATTR}: {exc}. {fix}",
                                  field="model") from exc
    if "<locals>" in cls_ref or cls_ref.startswith("__main__:"):
        raise errors.InvalidInput(f"{how} an importable class, and {cls_ref} is not one. {fix}",
                                  field="model")
    try:
        rebuilt = _resolve_class(cls_ref)(**kwargs)
    except errors.ShipyardError:
        raise
    except Exception as exc:  # noqa: BLE001 - the constructor is the caller's code
        raise errors.InvalidInput(
            f"{how} to rebuild it as {cls_ref}(**{kwargs!r}), which failed: "
            f"{type(exc).__name__}: {exc}. {fix}", field="model") from exc
    state = model.state_dict()
    if set(rebuilt.state_dict()) != set(state):
        raise errors.InvalidInput(
            f"{how} {cls_ref}(**{kwargs!r}) to have the same parameters as the saved module, "
            f"and they differ. {fix}", field="model")
    torch.save(state, str(path / _STATE_FILE))
    return {"format": "state_dict", "file": _STATE_FILE, "class": cls_ref,
            "init_kwargs": kwargs, "script_error": script_error}


def _resolve_class(ref: str) -> Any:
    module, _, qualname = ref.partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise errors.MissingDependency(
            f"the model's class {ref} cannot be imported ({exc}): install the code that "
            "defines it where the model is loaded") from exc
    if not isinstance(obj, type):
        raise errors.InvalidInput(f"{ref} is not a class", field="model")
    return obj


def load(path: Path, options: dict[str, Any]) -> Any:
    torch = _torch()
    file = str(path / options["file"])
    if options.get("format") == "state_dict":
        cls = _resolve_class(options["class"])
        if not issubclass(cls, torch.nn.Module):
            raise errors.IntegrityError(f"{options['class']} is not a torch.nn.Module")
        module = cls(**options.get("init_kwargs", {}))
        module.load_state_dict(torch.load(file, map_location="cpu", weights_only=True))
    else:
        with _quiet_jit():
            module = torch.jit.load(file, map_location="cpu")
    module.eval()
    return module


def _float_dtype(torch: Any, module: Any) -> Any:
    for tensor in (*module.parameters(), *module.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def _to_tensor(torch: Any, module: Any, data: Any) -> Any:
    import numpy as np

    if isinstance(data, torch.Tensor):
        return data
    if hasattr(data, "to_numpy") and hasattr(data, "columns"):
        arr = data.to_numpy(dtype=np.float32)
    else:
        arr = np.asarray(data)
    if arr.dtype.kind not in "fiub":
        raise errors.InvalidInput(f"a PyTorch model takes numbers, got an array of {arr.dtype}",
                                  field="inputs")
    tensor = torch.from_numpy(np.ascontiguousarray(arr))
    if arr.dtype == np.float64 or (hasattr(data, "columns")):
        tensor = tensor.to(_float_dtype(torch, module))
    return tensor


def _to_numpy(torch: Any, out: Any) -> Any:
    if isinstance(out, torch.Tensor):
        return out.detach().cpu().numpy()
    if isinstance(out, tuple | list):
        return type(out)(_to_numpy(torch, o) for o in out)
    if isinstance(out, dict):
        return {k: _to_numpy(torch, v) for k, v in out.items()}
    return out


def predict(native: Any, data: Any, options: dict[str, Any]) -> Any:
    torch = _torch()
    with torch.no_grad():
        return _to_numpy(torch, native(_to_tensor(torch, native, data)))


def has_proba(native: Any, options: dict[str, Any]) -> bool:
    return False


def predict_proba(native: Any, data: Any, options: dict[str, Any]) -> Any:
    raise errors.InvalidInput("PyTorch models have no predict_proba; apply softmax to predict",
                              field="method")
