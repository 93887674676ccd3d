"""Deployment specs as text: guard expressions (``error_rate<=0.01``) and YAML spec files.

A spec file holds the arguments of :meth:`DeploymentService.create`::

    model: credit-risk
    arms: {champion: "@champion", challenger: 3}
    strategy: {kind: canary, stable: champion, canary: challenger, percent: 10,
               steps: [10, 25, 50, 100], step_interval_s: 300}
    guards: ["error_rate<=0.01", {metric: latency_p99_ms, op: "<=", threshold: 50}]
    auto: true
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shipyard import errors

from ._spec import GUARD_METRICS

__all__ = ["parse_guard", "load_spec_file", "SPEC_KEYS"]

#: The keys a spec file may have (``name`` is optional: the command line names it too).
SPEC_KEYS = ("name", "model", "arms", "strategy", "guards", "auto")

_GUARD_RE = re.compile(
    r"^\s*(?P<metric>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<op><=|>=)\s*(?P<threshold>[^\s@]+)\s*"
    r"(?:@\s*(?P<min>\d+)\s*)?$")


def parse_guard(text: str, *, min_samples: int | None = None) -> dict[str, Any]:
    """``"error_rate<=0.01"`` (optionally ``"…@200"``: at least 200 samples) as a guard dict."""
    match = _GUARD_RE.match(text or "")
    if match is None:
        raise errors.InvalidInput(
            f"invalid guard {text!r}: write METRIC<=VALUE or METRIC>=VALUE, optionally "
            "followed by @MIN_SAMPLES (e.g. error_rate<=0.01@200)", field="guards")
    metric = match["metric"]
    if metric not in GUARD_METRICS:
        raise errors.InvalidInput(f"invalid guard {text!r}: unknown metric {metric!r}; use "
                                  f"one of {', '.join(GUARD_METRICS)}", field="guards")
    try:
        threshold = float(match["threshold"])
    except ValueError:
        raise errors.InvalidInput(f"invalid guard {text!r}: {match['threshold']!r} is not a "
                                  "number", field="guards") from None
    guard: dict[str, Any] = {"metric": metric, "op": match["op"], "threshold": threshold}
    if match["min"] is not None:
        guard["min_samples"] = int(match["min"])
    elif min_samples is not None:
        guard["min_samples"] = min_samples
    return guard


def load_spec_file(path: str | Path) -> dict[str, Any]:
    """The spec in a YAML (or JSON) file, guards given as text parsed; unknown keys refused."""
    import yaml

    file = Path(path)
    try:
        data = yaml.safe_load(file.read_text())
    except OSError as exc:
        raise errors.InvalidInput(f"cannot read the spec file {str(file)!r}: "
                                  f"{exc.strerror or exc}", field="file") from None
    except yaml.YAMLError as exc:
        raise errors.InvalidInput(f"the spec file {str(file)!r} is not valid YAML: "
                                  f"{' '.join(str(exc).split())}", field="file") from None
    if not isinstance(data, Mapping):
        raise errors.InvalidInput(f"the spec file {str(file)!r} must hold a mapping with "
                                  f"the keys {', '.join(SPEC_KEYS)}", field="file")
    unknown = sorted(str(k) for k in data if k not in SPEC_KEYS)
    if unknown:
        raise errors.InvalidInput(f"the spec file {str(file)!r} has unknown keys "
                                  f"{', '.join(unknown)}; use {', '.join(SPEC_KEYS)}",
                                  field="file")
    spec = dict(data)
    if "guards" in spec:
        guards = spec["guards"] or []
        if not isinstance(guards, list):
            raise errors.InvalidInput("guards must be a list", field="guards")
        spec["guards"] = [parse_guard(g) if isinstance(g, str) else g for g in guards]
    return spec
