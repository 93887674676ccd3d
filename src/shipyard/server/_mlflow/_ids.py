"""How MLflow's identifiers map onto Shipyard's: experiment "0", artifact URIs, logged models.

* Experiment ``"0"`` (MLflow's Default) is Shipyard's experiment named ``Default``, created on
  first use; that experiment is always shown to MLflow as ``"0"``. Other ids are the same.
* A run's ``artifact_uri`` is ``mlflow-artifacts:/<experiment_id>/<run_id>/artifacts``, so the
  client sends artifact bytes through this server into Shipyard's content-addressed store.
* A logged model (MLflow 3) is backed by a Shipyard run nested under its source run and tagged
  :data:`LOGGED_MODEL_TAG`; its id is ``m-<run_id>`` and its files are that run's artifacts
  under :data:`MODEL_DIR`.
"""

from __future__ import annotations

import re

from shipyard import errors

__all__ = ["DEFAULT_NAME", "MLFLOW_DEFAULT_ID", "ExperimentIds", "INTERNAL_PREFIX",
           "LOGGED_MODEL_TAG", "MODEL_TYPE_TAG", "OUTPUT_STEP_TAG", "STATUS_MESSAGE_TAG",
           "MODEL_VERSIONS_TAG", "MODEL_DIR", "artifact_uri", "model_id_of", "run_of_model_id",
           "check_relative", "parse_artifact_path"]

DEFAULT_NAME = "Default"
MLFLOW_DEFAULT_ID = "0"
#: Tags of the Shipyard run behind a logged model (hidden from MLflow's views of it).
INTERNAL_PREFIX = "shipyard.mlflow."
LOGGED_MODEL_TAG = "shipyard.mlflow.logged_model"
MODEL_TYPE_TAG = "shipyard.mlflow.model_type"
OUTPUT_STEP_TAG = "shipyard.mlflow.output_step"
STATUS_MESSAGE_TAG = "shipyard.mlflow.status_message"
#: MLflow's tag on a logged model that lists its registered versions.
MODEL_VERSIONS_TAG = "mlflow.modelVersions"
MODEL_DIR = "model"
_MODEL_ID = re.compile(r"^m-([0-9a-f]{32})$")


class ExperimentIds:
    """Translate experiment ids between MLflow (``"0"`` = Default) and Shipyard, per request."""

    def __init__(self, tracking: object) -> None:
        self.tracking = tracking
        self._default: str | None = None
        self._looked = False

    def default_id(self) -> str | None:
        if not self._looked:
            try:
                self._default = self.tracking.get_experiment_by_name(  # type: ignore[attr-defined]
                    DEFAULT_NAME).experiment_id
            except errors.NotFound:
                self._default = None
            self._looked = True
        return self._default

    def to_shipyard(self, mlflow_id: object, *, create: bool = False) -> str:
        value = str(mlflow_id).strip()
        if value != MLFLOW_DEFAULT_ID:
            if not value.isdigit():
                raise errors.InvalidInput(f"invalid experiment id {value!r}",
                                          field="experiment_id")
            return value
        found = self.default_id()
        if found is not None:
            return found
        if create:
            exp = self.tracking.get_or_create_experiment(DEFAULT_NAME)  # type: ignore[attr-defined]
            self._default, self._looked = exp.experiment_id, True
            return str(exp.experiment_id)
        raise errors.NotFound(f"experiment id 0 ({DEFAULT_NAME}) does not exist")

    def to_mlflow(self, shipyard_id: str) -> str:
        return MLFLOW_DEFAULT_ID if shipyard_id == self.default_id() else shipyard_id


def artifact_uri(mlflow_experiment_id: str, run_id: str, path: str = "") -> str:
    base = f"mlflow-artifacts:/{mlflow_experiment_id}/{run_id}/artifacts"
    return f"{base}/{path}" if path else base


def model_id_of(run_id: str) -> str:
    return f"m-{run_id}"


def run_of_model_id(model_id: object) -> str:
    match = _MODEL_ID.match(str(model_id or ""))
    if not match:
        raise errors.NotFound(f"logged model {model_id!r} does not exist")
    return match.group(1)


def check_relative(path: str, field: str = "path") -> str:
    """A relative artifact path: no ``..`` or ``.`` segment, no leading ``/``, no NUL."""
    if "\x00" in path:
        raise errors.InvalidInput("artifact path must not contain NUL", field=field)
    if path.startswith("/") or "\\" in path or re.match(r"^[A-Za-z]:", path):
        raise errors.InvalidInput(f"artifact path {path!r} must be relative and use '/'",
                                  field=field)
    if any(part in ("..", ".") for part in path.split("/")):
        raise errors.InvalidInput(f"artifact path {path!r} must not contain '..' or '.'",
                                  field=field)
    return path.strip("/")


def parse_artifact_path(path: str) -> tuple[str, str, str]:
    """``<experiment_id>/<run_id>/artifacts[/<rel>]`` → (experiment id, run id, rel)."""
    clean = check_relative(path)
    parts = clean.split("/", 3)
    if (len(parts) < 3 or not parts[0].isdigit() or not re.fullmatch(r"[0-9a-f]{32}", parts[1])
            or parts[2] != "artifacts"):
        raise errors.InvalidInput(
            f"artifact path {path!r} is not <experiment_id>/<run_id>/artifacts/<path>: this "
            "server keeps artifacts per run", field="path")
    return parts[0], parts[1], parts[3] if len(parts) == 4 else ""
