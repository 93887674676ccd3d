"""Deployment specs as text: guard expressions (``error_rate<=0.01``,
``accuracy>=stable-0.02``) and YAML spec files.

A spec file holds the arguments of :meth:`DeploymentService.create`::

    model: credit-risk
    arms: {champion: "@champion", challenger: 3}
    strategy: {kind: canary, stable: champion, canary: challenger, percent: 10,
               steps: [10, 25, 50, 100], step_interval_s: 300}
    guards: ["error_rate<=0.01", "accuracy>=stable-0.02",
             {metric: latency_p99_ms, op: "<=", threshold: 1.2, compare: ratio}]
    auto: true
"""

from __future__ import annotations

import math
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
    r"^\s*(?P<metric>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<op><=|>=)\s*(?P<limit>[^@]*?)\s*"
    r"(?:@\s*(?P<min>\d+)\s*)?$")
#: The limit of a relative guard: ``stable``, ``stable-0.02``, ``stable + 0.01``, ``stable*1.2``.
_RELATIVE_RE = re.compile(r"^stable\s*(?:(?P<how>[-+*])\s*(?P<number>\S+))?$")
_FORMS = ("write METRIC<=LIMIT or METRIC>=LIMIT, optionally followed by @MIN_SAMPLES; "
          "LIMIT is a number (accuracy>=0.7), stable±NUMBER (accuracy>=stable-0.02) or "
          "stable*NUMBER (latency_p99_ms<=stable*1.2)")


def parse_guard(text: str, *, min_samples: int | None = None) -> dict[str, Any]:
    """A guard dict from text (every error names ``text``):

    - ``"error_rate<=0.01"``: an absolute threshold;
    - ``"accuracy>=stable-0.02"``: the difference from the stable arm (``stable+0.01``,
      ``stable`` alone for no margin);
    - ``"latency_p99_ms<=stable*1.2"``: the ratio to the stable arm;
    - any of them followed by ``@200``: at least 200 samples (of each arm, when relative).
    """
    match = _GUARD_RE.match(text) if isinstance(text, str) else None
    if match is None or not match["limit"]:
        raise errors.InvalidInput(f"invalid guard {text!r}: {_FORMS}", field="guards")
    metric = match["metric"]
    if metric not in GUARD_METRICS:
        raise errors.InvalidInput(f"invalid guard {text!r}: unknown metric {metric!r}; use "
                                  f"one of {', '.join(GUARD_METRICS)}", field="guards")
    compare, threshold = _limit(text, match["limit"])
    guard: dict[str, Any] = {"metric": metric, "op": match["op"], "threshold": threshold}
    if compare != "absolute":
        guard["compare"] = compare
    if match["min"] is not None:
        guard["min_samples"] = int(match["min"])
    elif min_samples is not None:
        guard["min_samples"] = min_samples
    return guard


def _limit(text: str, limit: str) -> tuple[str, float]:
    """(compare, threshold) of a guard's limit."""
    relative = _RELATIVE_RE.match(limit)
    if relative is None and limit.lower().startswith("stable"):
        raise errors.InvalidInput(f"invalid guard {text!r}: {limit!r} is not a limit; "
                                  f"{_FORMS}", field="guards")
    if relative is not None and relative["how"] is None:
        return "difference", 0.0
    number = relative["number"] if relative is not None else limit
    try:
        value = float(number)
    except ValueError:
        raise errors.InvalidInput(f"invalid guard {text!r}: {number!r} is not a number; "
                                  f"{_FORMS}", field="guards") from None
    if not math.isfinite(value):
        raise errors.InvalidInput(f"invalid guard {text!r}: {number!r} is not a finite "
                                  "number", field="guards")
    if relative is None:
        return "absolute", value
    if relative["how"] == "*":
        if value <= 0:
            raise errors.InvalidInput(f"invalid guard {text!r}: the ratio must be above 0 "
                                      f"(e.g. stable*1.2)", field="guards")
        return "ratio", value
    if number.startswith(("+", "-")):  # "stable--0.02" is a typo, not a double negation
        raise errors.InvalidInput(f"invalid guard {text!r}: {limit!r} is not a limit; "
                                  f"{_FORMS}", field="guards")
    return "difference", value if relative["how"] == "+" else -value


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
