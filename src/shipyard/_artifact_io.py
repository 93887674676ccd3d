"""Turning Python objects into artifact bytes: dicts, text, DataFrames, figures, datasets."""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

from shipyard import errors

__all__ = ["dict_bytes", "dataframe_parquet_bytes", "figure_bytes", "dataset_fingerprint"]


def dict_bytes(data: Any, path: str) -> bytes:
    try:
        if path.endswith((".yaml", ".yml")):
            import yaml

            return yaml.safe_dump(data, sort_keys=False).encode()
        return json.dumps(data, indent=2, default=_jsonable).encode()
    except (TypeError, ValueError) as exc:
        raise errors.InvalidInput(f"cannot serialize {type(data).__name__} to {path}: {exc}",
                                  field="data") from exc


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def dataframe_parquet_bytes(df: Any) -> bytes:
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise errors.InvalidInput(f"expected a pandas DataFrame, got {type(df).__name__}",
                                  field="data")
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


def figure_bytes(figure: Any, path: str) -> bytes:
    """A matplotlib or plotly figure as PNG/SVG/PDF (matplotlib) or HTML/JSON (plotly)."""
    suffix = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    if hasattr(figure, "savefig"):  # matplotlib
        if suffix not in ("png", "svg", "pdf", "jpg", "jpeg"):
            raise errors.InvalidInput(
                f"matplotlib figures save as .png/.svg/.pdf/.jpg, not {path!r}", field="path")
        buf = io.BytesIO()
        figure.savefig(buf, format=suffix, bbox_inches="tight")
        return buf.getvalue()
    if hasattr(figure, "to_html") and hasattr(figure, "to_json"):  # plotly
        if suffix == "html":
            return str(figure.to_html(include_plotlyjs=True, full_html=True)).encode()
        if suffix == "json":
            return str(figure.to_json()).encode()
        raise errors.InvalidInput(f"plotly figures save as .html or .json, not {path!r}",
                                  field="path")
    raise errors.InvalidInput(
        f"log_figure needs a matplotlib or plotly figure, got {type(figure).__name__}",
        field="figure")


def dataset_fingerprint(data: Any) -> dict[str, Any]:
    """Digest (SHA-256 of content, columns and dtypes), schema and row count of a dataset."""
    import numpy as np
    import pandas as pd

    if isinstance(data, np.ndarray):
        data = pd.DataFrame(data if data.ndim > 1 else data.reshape(-1, 1))
        data.columns = [str(c) for c in data.columns]
    elif isinstance(data, pd.Series):
        data = data.to_frame()
    if not isinstance(data, pd.DataFrame):
        raise errors.InvalidInput(
            f"log_input needs a DataFrame, Series or ndarray, got {type(data).__name__}",
            field="data")
    h = hashlib.sha256()
    h.update(json.dumps([[str(c), str(t)] for c, t in data.dtypes.items()]).encode())
    h.update(pd.util.hash_pandas_object(data, index=False).values.tobytes())
    schema = {str(c): str(t) for c, t in data.dtypes.items()}
    return {"digest": h.hexdigest(), "schema": schema, "num_rows": int(len(data))}
