"""The Open Inference Protocol (KServe V2) over REST: tensors in, tensors out.

Decoding turns the request's input tensors into what the model takes: for a columnar
signature, one tensor per column (shape ``[n]`` or ``[n, 1]``) or a single ``[n, k]`` tensor
whose columns map to the signature's by position; for a tensor signature, the one tensor.
JSON ``data`` may be flat (row-major) or nested. The binary tensor data extension is
supported both ways (``binary_data_size`` on an input, ``binary_data`` /
``binary_data_output`` for outputs, the ``Inference-Header-Content-Length`` header), which
is what ``tritonclient`` uses by default for outputs.
"""

from __future__ import annotations

import math
import struct
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from shipyard import errors

if TYPE_CHECKING:
    from ._model import PredictionResult, ServedModel

__all__ = ["V2Error", "DATATYPES", "model_metadata", "decode_infer_request",
           "encode_infer_response", "datatype_of"]

HEADER_LENGTH = "inference-header-content-length"

#: V2 datatype → numpy dtype (BYTES holds str or bytes objects)
DATATYPES: dict[str, Any] = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
    "UINT64": np.uint64, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
    "INT64": np.int64, "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
    "BYTES": np.object_,
}
_COLUMN_DATATYPE = {"boolean": "BOOL", "integer": "INT32", "long": "INT64", "float": "FP32",
                    "double": "FP64", "string": "BYTES", "category": "BYTES",
                    "datetime": "BYTES", "binary": "BYTES"}
OUTPUTS = ("predict", "predict_proba")


class V2Error(errors.InvalidInput):
    """A malformed inference request (400, ``{"error": message}``)."""


def datatype_of(dtype: Any) -> str:
    """The V2 datatype of a numpy dtype (anything else travels as BYTES)."""
    kind = np.dtype(dtype)
    for name, np_type in DATATYPES.items():
        if name != "BYTES" and kind == np.dtype(np_type):
            return name
    return "BYTES"


# -- metadata ------------------------------------------------------------------------------


def model_metadata(served: ServedModel) -> dict[str, Any]:
    """``GET /v2/models/{name}``: inputs from the signature, outputs from the model."""
    sig = served.signature
    inputs: list[dict[str, Any]] = []
    if sig is not None and isinstance(sig.inputs, list):
        for col in sig.inputs:
            datatype = _COLUMN_DATATYPE[col.type]
            if col.type == "category" and col.categories and all(
                    isinstance(c, int) and not isinstance(c, bool) for c in col.categories):
                datatype = "INT64"
            inputs.append({"name": col.name, "datatype": datatype, "shape": [-1]})
    elif sig is not None and not isinstance(sig.inputs, list):
        inputs.append({"name": "input", "datatype": datatype_of(sig.inputs.dtype),
                       "shape": list(sig.inputs.shape)})
    if served.features is not None:  # entity keys in, the feature store adds the rest
        inputs = served.features.request_inputs({i["name"]: i["datatype"] for i in inputs})
    outputs = [{"name": "predict", "datatype": _predict_datatype(served), "shape": [-1]}]
    if served.has_proba:
        classes = served.classes
        outputs.append({"name": "predict_proba", "datatype": "FP64",
                        "shape": [-1, len(classes) if classes else -1]})
    return {"name": served.name, "versions": [served.version_label],
            "platform": f"shipyard-{served.flavor}", "inputs": inputs, "outputs": outputs}


def _predict_datatype(served: ServedModel) -> str:
    sig = served.signature
    out = sig.outputs if sig is not None else None
    if out is None:
        return "FP64"
    if isinstance(out, list):
        return _COLUMN_DATATYPE[out[0].type] if out else "FP64"
    return datatype_of(out.dtype)


# -- requests ------------------------------------------------------------------------------


def split_body(body: bytes, header_length: str | None) -> tuple[dict[str, Any], bytes]:
    """The JSON part of an inference request and the binary tensor data after it."""
    if header_length is None:
        json_part, binary = body, b""
    else:
        try:
            size = int(header_length)
        except ValueError:
            raise V2Error("Inference-Header-Content-Length must be an integer") from None
        if not 0 <= size <= len(body):
            raise V2Error(f"Inference-Header-Content-Length {size} is outside the body "
                          f"({len(body)} bytes)")
        json_part, binary = body[:size], body[size:]
    try:
        payload = orjson.loads(json_part)
    except orjson.JSONDecodeError as exc:
        raise V2Error(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise V2Error("the request body must be a JSON object with 'inputs'")
    return payload, binary


def decode_infer_request(payload: dict[str, Any], binary: bytes,
                         served: ServedModel) -> tuple[Any, int, dict[str, bool]]:
    """(model input, rows, {output name: as binary}) from an inference request."""
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise V2Error("'inputs' must be a non-empty list of tensors "
                      "({name, shape, datatype, data})")
    tensors: list[tuple[str, np.ndarray]] = []
    offset = 0
    for i, spec in enumerate(inputs):
        name, arr, offset = _decode_tensor(spec, i, binary, offset)
        tensors.append((name, arr))
    if offset != len(binary):
        raise V2Error(f"{len(binary) - offset} bytes of binary data are not claimed by any "
                      "input's binary_data_size")
    data, rows = _model_input(tensors, served)
    return data, rows, _requested_outputs(payload, served)


def _decode_tensor(spec: Any, index: int, binary: bytes,
                   offset: int) -> tuple[str, np.ndarray, int]:
    if not isinstance(spec, dict):
        raise V2Error(f"inputs[{index}] must be an object {{name, shape, datatype, data}}")
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise V2Error(f"inputs[{index}] has no 'name'")
    shape = spec.get("shape")
    if not isinstance(shape, list) or not shape or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise V2Error(f"input {name!r}: 'shape' must be a list of non-negative integers, "
                      f"got {shape!r}")
    datatype = spec.get("datatype")
    if datatype not in DATATYPES:
        raise V2Error(f"input {name!r}: unknown datatype {datatype!r}; use one of "
                      f"{', '.join(DATATYPES)}")
    params = spec.get("parameters") or {}
    size = params.get("binary_data_size") if isinstance(params, dict) else None
    if size is not None:
        if not isinstance(size, int) or size < 0 or offset + size > len(binary):
            raise V2Error(f"input {name!r}: binary_data_size {size!r} does not fit the "
                          f"{len(binary) - offset} bytes of binary data left")
        arr = _from_binary(binary[offset:offset + size], datatype, name)
        offset += size
    elif "data" in spec:
        arr = _from_json(spec["data"], datatype, name)
    else:
        raise V2Error(f"input {name!r} has no 'data'")
    count = math.prod(shape)
    if arr.size != count:
        raise V2Error(f"input {name!r}: shape {shape} holds {count} values, "
                      f"'data' has {arr.size}")
    return name, arr.reshape(shape), offset


def _from_json(data: Any, datatype: str, name: str) -> np.ndarray:
    if not isinstance(data, list):
        data = [data]
    try:
        raw = np.asarray(data)
    except ValueError:
        raise V2Error(f"input {name!r}: 'data' is a ragged nested list") from None
    kind = raw.dtype.kind
    bad = False
    if datatype == "BYTES":
        bad = kind not in "UO" or (kind == "O" and not all(
            isinstance(v, str | bytes) for v in raw.ravel()))
        return raw.astype(object) if not bad else _wrong_type(name, datatype, raw)
    if datatype == "BOOL":
        bad = kind != "b"
    elif datatype.startswith(("INT", "UINT")):
        bad = kind not in "iu"
    else:  # FP: numbers, and null for a missing value
        bad = kind not in "iuf" and not (kind == "O" and all(
            v is None or (isinstance(v, int | float) and not isinstance(v, bool))
            for v in raw.ravel()))
    if bad:
        return _wrong_type(name, datatype, raw)
    target = np.dtype(DATATYPES[datatype])
    converted = raw.astype(target)
    if kind in "iu" and target.kind in "iu" and not np.array_equal(converted, raw):
        raise V2Error(f"input {name!r}: values out of range for {datatype}")
    return converted


def _wrong_type(name: str, datatype: str, raw: np.ndarray) -> np.ndarray:
    sample = raw.ravel()[:1].tolist()
    raise V2Error(f"input {name!r}: 'data' does not match datatype {datatype} "
                  f"(got {type(sample[0]).__name__ if sample else 'nothing'} values)")


def _from_binary(chunk: bytes, datatype: str, name: str) -> np.ndarray:
    if datatype == "BYTES":
        items: list[Any] = []
        pos = 0
        while pos < len(chunk):
            if pos + 4 > len(chunk):
                raise V2Error(f"input {name!r}: truncated BYTES element")
            (length,) = struct.unpack_from("<I", chunk, pos)
            pos += 4
            value = chunk[pos:pos + length]
            pos += length
            try:
                items.append(value.decode())
            except UnicodeDecodeError:
                items.append(value)
        return np.array(items, dtype=object)
    dtype = np.dtype(DATATYPES[datatype])
    if len(chunk) % dtype.itemsize:
        raise V2Error(f"input {name!r}: {len(chunk)} bytes is not a whole number of "
                      f"{datatype} values")
    return np.frombuffer(chunk, dtype=dtype.newbyteorder("<")).astype(dtype)


def _model_input(tensors: list[tuple[str, np.ndarray]],
                 served: ServedModel) -> tuple[Any, int]:
    columns = served.columns
    sig = served.signature
    if sig is not None and columns is None:  # a tensor model takes the one tensor as is
        if len(tensors) != 1:
            raise V2Error(f"this model takes one input tensor, got {len(tensors)}")
        arr = tensors[0][1]
        return arr, (arr.shape[0] if arr.ndim else 1)
    specs = {c.name: c.type for c in sig.inputs} if sig is not None and isinstance(
        sig.inputs, list) else {}
    if served.features is not None:  # integer join keys: JSON clients may send FP64
        specs.update({k: "long" for k, t in served.features.key_types.items()
                      if t in ("int32", "int64")})
    if len(tensors) == 1 and tensors[0][1].ndim == 2 and tensors[0][0] not in specs \
            and (columns is None or tensors[0][1].shape[1] == len(columns) > 1 or (
                len(columns) == 1 and tensors[0][1].shape[1] == 1)):
        matrix = tensors[0][1]  # one [n, k] tensor: columns by position
        names = columns or [str(j) for j in range(matrix.shape[1])]
        data = {n: _cast_like(specs.get(n), matrix[:, j]) for j, n in enumerate(names)}
        return data, matrix.shape[0]
    data = {}
    rows: int | None = None
    for name, arr in tensors:
        if name in data:
            raise V2Error(f"input {name!r} is given twice")
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 1:
            hint = f" ({len(columns)} columns)" if columns else ""
            raise V2Error(f"input {name!r}: a column tensor has shape [n] or [n, 1], got "
                          f"{list(arr.shape)}; send one tensor per column or a single "
                          f"[n, k] tensor with the model's columns in order{hint}")
        if rows is not None and len(arr) != rows:
            raise V2Error(f"input {name!r} has {len(arr)} rows, the others {rows}")
        rows = len(arr)
        data[name] = _cast_like(specs.get(name), arr)
    return data, rows or 0


def _cast_like(column_type: str | None, values: np.ndarray) -> np.ndarray:
    """Integral floats for an integer column become integers (JSON clients send FP64)."""
    if column_type in ("integer", "long") and values.dtype.kind == "f" and len(values) \
            and np.isfinite(values).all() and (values == np.round(values)).all():
        return values.astype(np.int32 if column_type == "integer" else np.int64)
    return values


def _requested_outputs(payload: dict[str, Any], served: ServedModel) -> dict[str, bool]:
    params = payload.get("parameters")
    binary_default = bool(params.get("binary_data_output")) if isinstance(params,
                                                                          dict) else False
    available = [n for n in OUTPUTS if n != "predict_proba" or served.has_proba]
    wanted = payload.get("outputs")
    if wanted is None:
        return {n: binary_default for n in available}
    if not isinstance(wanted, list):
        raise V2Error("'outputs' must be a list of {name, parameters?}")
    chosen: dict[str, bool] = {}
    for out in wanted:
        name = out.get("name") if isinstance(out, dict) else None
        if name not in available:
            raise V2Error(f"unknown output {name!r}: this model has {', '.join(available)}")
        out_params = out.get("parameters") or {}
        chosen[name] = bool(out_params.get("binary_data", binary_default)) if isinstance(
            out_params, dict) else binary_default
    return chosen


# -- responses -----------------------------------------------------------------------------


def encode_infer_response(served: ServedModel, request_id: str, result: PredictionResult,
                          outputs: dict[str, bool]) -> tuple[bytes, dict[str, str]]:
    """The response body and its extra headers (binary outputs follow the JSON)."""
    tensors: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, as_binary in outputs.items():
        arr = result.predictions if name == "predict" else result.probabilities
        if arr is None:
            continue
        datatype = datatype_of(arr.dtype)
        tensor: dict[str, Any] = {"name": name, "datatype": datatype,
                                  "shape": list(arr.shape)}
        if as_binary:
            raw = _to_binary(arr, datatype)
            tensor["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            tensor["data"] = _json_data(arr, datatype)
        tensors.append(tensor)
    version = served.version_label if result.model_version is None else str(
        result.model_version)
    parameters: dict[str, Any] = {"prediction_ids": result.prediction_ids}
    if result.explanations is not None:
        parameters["explanations"] = result.explanations
    body = {"model_name": served.name, "model_version": version,
            "id": request_id, "parameters": parameters, "outputs": tensors}
    header = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return header, {}
    return header + b"".join(chunks), {"Inference-Header-Content-Length": str(len(header))}


def _json_data(arr: np.ndarray, datatype: str) -> Any:
    flat = arr.reshape(-1)
    if datatype == "BYTES":
        return [v.decode(errors="replace") if isinstance(v, bytes) else str(v) for v in flat]
    return np.ascontiguousarray(flat)


def _to_binary(arr: np.ndarray, datatype: str) -> bytes:
    if datatype != "BYTES":
        return np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
    parts = []
    for value in arr.reshape(-1):
        raw = value if isinstance(value, bytes) else str(value).encode()
        parts.append(struct.pack("<I", len(raw)) + raw)
    return b"".join(parts)
