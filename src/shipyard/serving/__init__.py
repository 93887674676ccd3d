"""Model serving: a REST server per model version (KServe V2 + simple JSON) and batch scoring.

Public API: :class:`ServedModel` (one loaded version; ``load(ref)``), :func:`create_app`
(the Starlette app) with :class:`ServingConfig`, :func:`serve_model` (uvicorn),
:class:`MicroBatcher` and :class:`QueueFull` (adaptive micro-batching), :class:`BatchStats`,
the prediction log (:class:`PredictionLog`, :func:`read_predictions`, :func:`read_feedback`),
batch inference (:func:`predict_parquet`, :class:`BatchPredictResult`),
:func:`resolve_model_ref` and :class:`ServingMetrics`; for routers in front of several
versions, :class:`ServingState` (one served version with its batcher and log; ``swap``),
:func:`warm_up` and :class:`HTTPError`.
"""

from ._app import create_app, run_workers, serve_model
from ._batch import BatchPredictResult, predict_parquet
from ._batching import BatcherClosed, BatchStats, MicroBatcher, QueueFull
from ._features import FEATURE_SERVICE_TAG
from ._metrics import ServingMetrics
from ._model import PredictionRequest, PredictionResult, ServedModel, resolve_model_ref
from ._predlog import PredictionLog, read_feedback, read_predictions
from ._state import HTTPError, ServingConfig, ServingState, warm_up
from ._stream import (
    OutputRecord,
    SourceMessage,
    StreamOptions,
    StreamSink,
    StreamSource,
    StreamStats,
    run_stream,
)
from ._stream_url import StreamURL, parse_stream_url, stream_urls

__all__ = [
    "FEATURE_SERVICE_TAG",
    "BatchPredictResult",
    "BatcherClosed",
    "BatchStats",
    "MicroBatcher",
    "OutputRecord",
    "PredictionLog",
    "PredictionRequest",
    "PredictionResult",
    "QueueFull",
    "ServedModel",
    "ServingConfig",
    "ServingMetrics",
    "ServingState",
    "HTTPError",
    "SourceMessage",
    "StreamOptions",
    "StreamSink",
    "StreamSource",
    "StreamStats",
    "StreamURL",
    "create_app",
    "parse_stream_url",
    "predict_parquet",
    "read_feedback",
    "read_predictions",
    "resolve_model_ref",
    "run_stream",
    "run_workers",
    "serve_model",
    "stream_urls",
    "warm_up",
]
