"""The quickstart: a guided tour that trains and tracks credit-risk models on synthetic data.

Public API:

* :func:`make_credit_data` — the seeded synthetic credit-applications data set, and the
  column lists (:data:`FEATURES`, :data:`LABEL`, :data:`PROTECTED_ATTRIBUTE`…);
* :func:`run_quickstart` — run the walk-through, returning its :class:`QuickstartContext`;
* :data:`STEPS` and :class:`Step` — the walk-through as a list of named steps. A new
  capability adds its part of the tour as a ``Step`` inserted before ``where-to-look``
  (see ``_run.py``).

``shipyard quickstart`` on the command line calls :func:`run_quickstart`. Importing this
package is cheap; pandas and scikit-learn load when a function needs them.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "make_credit_data",
    "FEATURES",
    "NUMERIC_FEATURES",
    "CATEGORICAL_FEATURES",
    "LABEL",
    "PROTECTED_ATTRIBUTE",
    "ID_COLUMN",
    "TIME_COLUMN",
    "run_quickstart",
    "resolve_home",
    "QuickstartContext",
    "Step",
    "STEPS",
]

_DATA = ("make_credit_data", "FEATURES", "NUMERIC_FEATURES", "CATEGORICAL_FEATURES", "LABEL",
         "PROTECTED_ATTRIBUTE", "ID_COLUMN", "TIME_COLUMN")
_LAZY = {**dict.fromkeys(_DATA, "._data"),
         **dict.fromkeys(("run_quickstart", "resolve_home", "QuickstartContext", "Step",
                          "STEPS"), "._run")}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'shipyard.quickstart' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
