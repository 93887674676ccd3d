"""The training step: a parent run "model-selection" with one nested run per candidate.

Each candidate run logs its params, the data set as an input, a validation curve, the final
validation metrics, a permutation feature-importance table (Parquet), the ROC curve points
(Parquet), when matplotlib is installed the ROC curve as a PNG, and the fitted model (with its
signature and environment) so the registry step can register the best one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from sklearn.metrics import roc_auc_score

from shipyard import errors
from shipyard.fluent import ActiveRun, start_run

from ._data import FEATURES, LABEL, TIME_COLUMN
from ._models import (
    Candidate,
    candidates,
    evaluate,
    feature_importance,
    roc_figure,
    roc_points,
    single_openmp_thread,
)
from ._run import DATASET, EXPERIMENT, PARENT_RUN

if TYPE_CHECKING:
    from ._run import QuickstartContext

__all__ = ["train_candidates", "VALID_FRACTION"]

#: The newest applications held out for validation (out-of-time, as credit models are judged).
VALID_FRACTION = 0.25

Split = tuple[pd.DataFrame, pd.Series, pd.DataFrame, pd.Series]


def train_candidates(ctx: QuickstartContext) -> None:
    """Train every candidate as a child of one parent run; record the best on the parent."""
    if ctx.data is None:
        raise errors.Conflict("the train step needs data: run the data step first")
    df = ctx.data
    split = _out_of_time_split(df)
    cands = candidates(ctx.seed)
    with start_run(EXPERIMENT, run_name=PARENT_RUN, client=ctx.client,
                   tags={"shipyard.quickstart": "true"}) as parent:
        ctx.experiment_id, ctx.parent_run_id = parent.experiment_id, parent.run_id
        parent.log_params({"rows": len(df), "seed": ctx.seed, "split": "out-of-time",
                           "valid_fraction": VALID_FRACTION,
                           "candidates": ",".join(c.name for c in cands)})
        parent.log_input(df, name=DATASET, context="training")
        with _progress(ctx) as progress, single_openmp_thread():
            scores = {}
            for cand in cands:
                run_id, auc = _train_one(ctx, cand, split, progress)
                scores[run_id] = (auc, cand.name)
        best_id, (best_auc, best_name) = max(scores.items(), key=lambda item: item[1][0])
        parent.log_metrics({"best_roc_auc": best_auc})
        parent.set_tags({"best_run_id": best_id, "best_model": best_name})
    ctx.best_run_id = best_id


def _out_of_time_split(df: pd.DataFrame) -> Split:
    ordered = df.sort_values(TIME_COLUMN, kind="stable")
    cut = int(len(ordered) * (1 - VALID_FRACTION))
    train, valid = ordered.iloc[:cut], ordered.iloc[cut:]
    for part, name in ((train, "training"), (valid, "validation")):
        if part[LABEL].nunique() < 2:
            raise errors.InvalidInput(f"the {name} split has one class only: use more rows",
                                      field="rows")
    return train[FEATURES], train[LABEL], valid[FEATURES], valid[LABEL]


def _progress(ctx: QuickstartContext) -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description:<24}"), BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), console=ctx.console)


def _train_one(ctx: QuickstartContext, cand: Candidate, split: Split,
               progress: Progress) -> tuple[str, float]:
    """Fit, evaluate and log one candidate as a nested run; returns (run id, ROC AUC)."""
    X, y, Xv, yv = split
    task = progress.add_task(cand.name, total=cand.stages + 1)
    with start_run(EXPERIMENT, run_name=cand.name, nested=True, client=ctx.client,
                   tags={"model_family": cand.name}) as run:
        run.log_params({**cand.params, "train_rows": len(X), "valid_rows": len(Xv),
                        "features": ",".join(FEATURES)})
        run.log_input(ctx.data, name=DATASET, context="training")
        fitted = cand.fit(X, y, Xv, yv, lambda: progress.advance(task))
        for step, values in fitted.curve:
            run.log_metrics(values, step=step)
        proba = fitted.model.predict_proba(Xv)[:, 1]
        metrics = evaluate(yv, proba)
        metrics["train_roc_auc"] = float(roc_auc_score(y, fitted.model.predict_proba(X)[:, 1]))
        run.log_metrics(metrics)
        _log_explanations(run, cand.name, fitted.model, Xv, yv, proba, metrics, ctx.seed)
        info = run.log_model(fitted.model, input_example=Xv.head(5))
        ctx.extras.setdefault("model_uris", {})[run.run_id] = info.model_uri
        progress.advance(task)
    ctx.run_ids.append(run.run_id)
    ctx.models[run.run_id] = fitted.model
    return run.run_id, metrics["roc_auc"]


def _log_explanations(run: ActiveRun, name: str, model: Any, Xv: pd.DataFrame, yv: pd.Series,
                      proba: Any, metrics: dict[str, float], seed: int) -> None:
    run.log_table(feature_importance(model, Xv, yv, seed), "feature_importance.parquet")
    points = roc_points(yv, proba)
    run.log_table(points, "roc_curve.parquet")
    figure = roc_figure(points, metrics["roc_auc"], f"{name} (validation)")
    if figure is not None:
        run.log_figure(figure, "roc_curve.png")
