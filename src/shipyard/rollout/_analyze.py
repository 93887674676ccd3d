"""The analysis of an A/B test (or any multi-arm deployment) from the prediction log.

Reads the predictions the router logged for the deployment (``deployment`` and ``arm``
columns; shadow copies excluded), joins the feedback by prediction id (the last feedback of
each prediction wins), and compares each arm's metric with the baseline arm (the stable /
first declared one): the mean reward with Welch's t-test, accuracy (label equals the
prediction) with a two-proportion z-test, both through ``deployments.compare_arms``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from shipyard import errors
from shipyard.deployments import Comparison, compare_arms
from shipyard.serving import read_feedback, read_predictions

from ._records import same_label

if TYPE_CHECKING:
    import pandas as pd

    from shipyard.client import Client

__all__ = ["ArmSummary", "ArmAnalysis", "analyze_deployment", "Metric"]

Metric = Literal["reward", "accuracy"]


@dataclass(frozen=True)
class ArmSummary:
    """One arm: its predictions, how many have the metric, and the metric's mean."""

    arm: str
    versions: list[int]
    predictions: int
    n: int
    mean: float | None


@dataclass(frozen=True)
class ArmAnalysis:
    """Per-arm summaries, each arm compared with ``baseline``, and the verdict in words."""

    deployment: str
    metric: Metric
    confidence: float
    baseline: str
    arms: list[ArmSummary]
    comparisons: dict[str, Comparison] = field(default_factory=dict)
    verdicts: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return " ".join(self.verdicts)


def analyze_deployment(name: str, *, metric: Metric = "reward", confidence: float = 0.95,
                       since: datetime | date | str | None = None,
                       home: str | Path | None = None,
                       client: Client | None = None) -> ArmAnalysis:
    """Compare the arms of deployment ``name`` on ``metric`` from the logged traffic."""
    from shipyard.client import Client

    if metric not in ("reward", "accuracy"):
        raise errors.InvalidInput(f"metric must be 'reward' or 'accuracy', not {metric!r}",
                                  field="metric")
    if not 0 < confidence < 1:
        raise errors.InvalidInput(f"confidence must be between 0 and 1, not {confidence}",
                                  field="confidence")
    client = client or Client()
    dep = client.deployments.get(name)
    home = Path(home) if home is not None else Path(client.settings.home)
    observations = _observations(home, dep.model, name, metric, since)
    order = [a for a in dep.arm_names if a in set(observations["arm"])] if len(
        observations) else []
    baseline = dep.stable_arm if dep.stable_arm in order else (order[0] if order else
                                                               dep.stable_arm)
    summaries = [_summary(observations, arm) for arm in order]
    analysis = ArmAnalysis(name, metric, confidence, baseline, summaries)
    base_values = _values(observations, baseline)
    kind: Literal["mean", "proportion"] = "mean" if metric == "reward" else "proportion"
    for summary in summaries:
        if summary.arm == baseline:
            continue
        values = _values(observations, summary.arm)
        if len(values) < 2 or len(base_values) < 2:
            analysis.verdicts.append(f"{summary.arm} vs {baseline}: not enough feedback yet "
                                     f"({len(values)} and {len(base_values)} observations; "
                                     "at least 2 each).")
            continue
        comparison = compare_arms(base_values, values, kind=kind, confidence=confidence)
        analysis.comparisons[summary.arm] = comparison
        analysis.verdicts.append(_verdict(summary.arm, baseline, metric, comparison))
    if not summaries:
        analysis.verdicts.append(f"no logged predictions of deployment {name!r} yet.")
    elif len(summaries) == 1:
        analysis.verdicts.append(f"only {summaries[0].arm} has answered so far: nothing to "
                                 "compare.")
    return analysis


def _observations(home: Path, model: str, name: str, metric: Metric,
                  since: datetime | date | str | None) -> pd.DataFrame:
    """One row per prediction of the deployment: arm, version, and the metric (or NaN)."""
    import numpy as np
    import pandas as pd

    preds = read_predictions(home, model, since=since)
    preds = preds[(preds["deployment"] == name) & (preds["endpoint"] != "shadow")]
    feedback = read_feedback(home, model, since=since)
    column = "reward" if metric == "reward" else "label"
    feedback = feedback[feedback[column].notna()].drop_duplicates("prediction_id",
                                                                  keep="last")
    joined = preds[["prediction_id", "arm", "model_version", "prediction"]].merge(
        feedback[["prediction_id", column]], on="prediction_id", how="left")
    if metric == "reward":
        value = pd.to_numeric(joined["reward"], errors="coerce")
    else:
        value = pd.Series([np.nan if label is None or (isinstance(label, float)
                                                       and np.isnan(label))
                           else float(same_label(_plain(pred), label))
                           for pred, label in zip(joined["prediction"], joined["label"],
                                                  strict=True)], index=joined.index)
    return pd.DataFrame({"arm": joined["arm"], "version": joined["model_version"],
                         "value": value})


def _plain(value: object) -> object:
    return value.item() if hasattr(value, "item") else value


def _values(observations: pd.DataFrame, arm: str) -> list[float]:
    found = observations[(observations["arm"] == arm) & observations["value"].notna()]
    return [float(v) for v in found["value"]]


def _summary(observations: pd.DataFrame, arm: str) -> ArmSummary:
    rows = observations[observations["arm"] == arm]
    values = rows["value"].dropna()
    versions = sorted({int(v) for v in rows["version"].dropna()})
    return ArmSummary(arm, versions, len(rows), len(values),
                      float(values.mean()) if len(values) else None)


def _verdict(arm: str, baseline: str, metric: Metric, c: Comparison) -> str:
    what = "mean reward" if metric == "reward" else "accuracy"
    level = f"{c.confidence:.0%}"
    interval = f"{c.diff:+.4g} ({level} CI {c.ci_low:+.4g} to {c.ci_high:+.4g}, p = " \
               f"{c.p_value:.3g})"
    if c.significant():
        better = "higher" if c.diff > 0 else "lower"
        return (f"{arm}'s {what} is {better} than {baseline}'s by {interval}: the "
                f"difference is significant at {level}.")
    return (f"no significant difference in {what} between {arm} and {baseline}: "
            f"{interval}; keep the test running or accept that they perform alike.")
