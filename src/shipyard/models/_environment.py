"""The environment a model needs: Python version and pinned package versions.

Versions come from the installed distributions' metadata (``importlib.metadata``), named by
the flavor — no import scanning and no dependency resolution, so capture takes milliseconds.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable
from functools import lru_cache
from importlib import metadata
from typing import Any

from shipyard._version import __version__

__all__ = ["capture_environment", "CORE_PACKAGES"]

#: Distributions every loaded model needs besides its flavor's library.
CORE_PACKAGES = ("numpy", "pandas")


@lru_cache(maxsize=256)  # installed versions do not change while a process runs
def _pin(dist: str) -> str | None:
    try:
        return f"{dist}=={metadata.version(dist)}"
    except metadata.PackageNotFoundError:
        return None


def capture_environment(packages: Iterable[str], extra: Iterable[str] = ()) -> dict[str, Any]:
    """``{"python": "3.11.7", "requirements": ["shipyard-mlops==…", "scikit-learn==…", …]}``."""
    pins = [f"shipyard-mlops=={__version__}"]
    for dist in (*CORE_PACKAGES, *packages):
        pin = _pin(dist)
        if pin and pin not in pins:
            pins.append(pin)
    pins.extend(r for r in extra if r not in pins)
    return {"python": platform.python_version(), "requirements": pins}
