"""Model serving: a REST server per model version (KServe V2 + simple JSON) and batch scoring.

Public API: :class:`ServedModel` (one loaded version; ``load(ref)``), :func:`create_app`
(the Starlette app) with :class:`ServingConfig`, :func:`serve_model` (uvicorn),
:class:`MicroBatcher` and :class:`QueueFull` (adaptive micro-batching), :class:`BatchStats`,
the prediction log (:class:`PredictionLog`, :func:`read_predictions`, :func:`read_feedback`),
batch inference (:func:`predict_parquet`, :class:`BatchPredictResult`),
:func:`resolve_model_ref` and :class:`ServingMetrics`.
"""

from ._app import create_app, serve_model
from ._batch import BatchPredictResult, predict_parquet
from ._batching import BatchStats, MicroBatcher, QueueFull
from ._metrics import ServingMetrics
from ._model import PredictionRequest, PredictionResult, ServedModel, resolve_model_ref
from ._predlog import PredictionLog, read_feedback, read_predictions
from ._state import ServingConfig

__all__ = [
    "BatchPredictResult",
    "BatchStats",
    "MicroBatcher",
    "PredictionLog",
    "PredictionRequest",
    "PredictionResult",
    "QueueFull",
    "ServedModel",
    "ServingConfig",
    "ServingMetrics",
    "create_app",
    "predict_parquet",
    "read_feedback",
    "read_predictions",
    "resolve_model_ref",
    "serve_model",
]
