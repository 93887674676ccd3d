"""ONNX: an ``onnx.ModelProto`` (from skl2onnx, ``torch.onnx``, …), run with ONNX Runtime.

Saved as ``model.onnx``; loaded as an ``onnxruntime.InferenceSession`` on the CPU.
``predict`` feeds the model's single input (a DataFrame becomes one 2-D array of the input's
type) or, when the model has one input per column (skl2onnx with per-column initial types),
each column by name; it returns the first output (labels for a classifier). A second output
is ``predict_proba`` (probabilities: a ZipMap's list of dicts becomes an array ordered by
class).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shipyard import errors

from . import require

NAME = "onnx"
PACKAGES = ("onnxruntime", "onnx")
EXTRA = "onnx"
_FILE = "model.onnx"

#: ONNX tensor element types → numpy dtypes
_DTYPES = {
    "tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
    "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int16)": "int16",
    "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(uint16)": "uint16",
    "tensor(uint32)": "uint32", "tensor(uint64)": "uint64", "tensor(bool)": "bool",
    "tensor(string)": "object",
}


def matches(model: Any) -> bool:
    return isinstance(model, require("onnx", EXTRA).ModelProto)


def save(model: Any, path: Path) -> dict[str, Any]:
    onnx = require("onnx", EXTRA)
    if not isinstance(model, onnx.ModelProto):
        raise errors.InvalidInput(f"the onnx flavor saves onnx.ModelProto, not "
                                  f"{type(model).__qualname__}", field="model")
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise errors.InvalidInput(f"invalid ONNX model: {exc}", field="model") from exc
    (path / _FILE).write_bytes(model.SerializeToString())
    return {"file": _FILE,
            "inputs": [i.name for i in model.graph.input],
            "outputs": [o.name for o in model.graph.output]}


def load(path: Path, options: dict[str, Any]) -> Any:
    ort = require("onnxruntime", EXTRA)
    return ort.InferenceSession(str(path / options["file"]), providers=["CPUExecutionProvider"])


def _array(values: Any, onnx_type: str, shape: Any) -> Any:
    import numpy as np

    dtype = _DTYPES.get(onnx_type)
    if dtype is None:
        raise errors.InvalidInput(f"ONNX input type {onnx_type} is not supported",
                                  field="inputs")
    arr = np.asarray(values)
    if dtype == "object":
        arr = arr.astype(str).astype(object)
    elif arr.dtype != np.dtype(dtype):
        arr = arr.astype(dtype)
    if shape is not None and len(shape) == 2 and arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    return arr


def _feed(session: Any, data: Any) -> dict[str, Any]:
    inputs = session.get_inputs()
    is_frame = hasattr(data, "columns")
    if len(inputs) > 1:
        names = [i.name for i in inputs]
        if not is_frame:
            raise errors.InvalidInput(f"this ONNX model takes the named inputs "
                                      f"{', '.join(names)}: pass a DataFrame with those columns",
                                      field="inputs")
        missing = [n for n in names if n not in data.columns]
        if missing:
            raise errors.InvalidInput(f"the ONNX model's inputs {', '.join(missing)} are not "
                                      "columns of the input", field="inputs")
        return {i.name: _array(data[i.name].to_numpy(), i.type, i.shape) for i in inputs}
    only = inputs[0]
    values = data.to_numpy() if is_frame else data
    return {only.name: _array(values, only.type, only.shape)}


def _run(session: Any, data: Any, output: int) -> Any:
    name = session.get_outputs()[output].name
    return session.run([name], _feed(session, data))[0]


def predict(native: Any, data: Any, options: dict[str, Any]) -> Any:
    return _run(native, data, 0)


def has_proba(native: Any, options: dict[str, Any]) -> bool:
    return len(native.get_outputs()) >= 2


def predict_proba(native: Any, data: Any, options: dict[str, Any]) -> Any:
    import numpy as np

    out = _run(native, data, 1)
    if isinstance(out, list):  # ZipMap: one {class: probability} per row
        if not out:
            return np.empty((0, 0), dtype=np.float32)
        classes = sorted(out[0])
        return np.array([[row[c] for c in classes] for row in out], dtype=np.float32)
    return out
