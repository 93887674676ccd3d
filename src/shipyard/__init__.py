"""Shipyard: a governed MLOps platform in one pip install.

``import shipyard as sy`` is cheap: names below are imported on first use.

    with sy.start_run(experiment="credit-risk") as run:
        run.log_params({"model": "gbm"})
        run.log_metric("auc", 0.91, step=3)
"""

from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__

_FLUENT = (
    "ActiveRun", "start_run", "end_run", "active_run", "set_experiment", "log_param",
    "log_params", "log_metric", "log_metrics", "set_tag", "set_tags", "log_artifact",
    "log_artifacts", "log_dict", "log_text", "log_figure", "log_table", "log_input", "flush",
    "get_run", "search_runs", "log_model", "load_model", "register_model", "set_alias",
    "get_historical_features",
)
_LAZY: dict[str, str] = {name: "shipyard.fluent" for name in _FLUENT}
_LAZY.update({
    "Client": "shipyard.client",
    "connect": "shipyard.client",
    "Settings": "shipyard.config",
    "get_settings": "shipyard.config",
    "autolog": "shipyard.autolog",
    "RunStatus": "shipyard.tracking",
})

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'shipyard' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
