"""``shipyard deployments serve`` (the live router) and ``shipyard deployments analyze``.

Registered on the ``deployments`` group by ``_deployments.py``. The work lives in
:mod:`shipyard.rollout`; these commands parse options and print.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

import typer

from ._options import Output, output_option

if TYPE_CHECKING:
    from shipyard.rollout import ArmAnalysis

__all__ = ["serve", "analyze"]


class AnalyzeMetric(StrEnum):
    reward = "reward"
    accuracy = "accuracy"


def serve(
    name: str = typer.Argument(..., help="Deployment name."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8080, help="TCP port."),
    workers: int = typer.Option(1, min=1, help="Worker processes, each with its own copy "
                                "of every arm; they share arm state and decisions through "
                                "the database."),
    max_batch_size: int = typer.Option(32, min=1, help="Most rows predicted in one model "
                                       "call, per arm (1 turns micro-batching off)."),
    max_wait_ms: float = typer.Option(2.0, min=0, help="Longest wait for more requests to "
                                      "join a batch, taken only under concurrent load."),
    max_queue: int = typer.Option(1000, min=1, help="Requests that may wait for an arm's "
                                  "model; beyond it the server answers 429 at once."),
    max_body_mb: float = typer.Option(16.0, min=0.001, help="Largest request body."),
    log_predictions: bool = typer.Option(True, "--log-predictions/--no-log-predictions",
                                         help="Append every prediction (with its deployment "
                                         "and arm) to <home>/predictions/<model>/."),
    refresh_interval: float = typer.Option(1.0, min=0.01, help="Seconds between reads of "
                                           "the deployment (runtime changes) and the shared "
                                           "arm statistics."),
    control_interval: float = typer.Option(1.0, min=0.01, help="Seconds between guard "
                                           "evaluations (automatic step/promote/rollback)."),
    flush_interval: float = typer.Option(1.0, min=0.01, help="Seconds between writes of "
                                         "assignments, pulls and feedback credits."),
    shadow_queue: int = typer.Option(1000, min=1, help="Copies waiting per shadow arm; "
                                     "beyond it copies are dropped (and counted)."),
    decide: bool = typer.Option(True, "--decide/--no-decide", help="Whether this server "
                                "takes automatic decisions (the deployment's --auto too)."),
    assignment_retention_h: float = typer.Option(
        168.0, "--assignment-retention-h", min=0,
        help="Hours a prediction's arm assignment is kept to credit late feedback; older "
        "ones are pruned every 10 minutes ('inf' keeps them all)."),
    log_level: str = typer.Option("warning", help="uvicorn log level."),
) -> None:
    """Serve a deployment: one endpoint, its arms behind it, its strategy carried out.

    Same endpoints as `shipyard serve`; responses name the model_version that answered.
    Changes made with `shipyard deployments update` take effect without a restart.
    """
    from shipyard.client import Client
    from shipyard.deployments import describe_strategy
    from shipyard.rollout import RouterOptions, serve_deployment
    from shipyard.serving import ServingConfig

    dep = Client().deployments.get(name)  # fails fast on an unknown name
    config = ServingConfig(max_batch_size=max_batch_size, max_wait_ms=max_wait_ms,
                           max_queue=max_queue, max_body_bytes=int(max_body_mb * 2**20),
                           log_predictions=log_predictions)
    options = RouterOptions(refresh_interval=refresh_interval,
                            control_interval=control_interval, flush_interval=flush_interval,
                            shadow_queue=shadow_queue, decide=decide,
                            assignment_retention=assignment_retention_h * 3600)
    arms = ", ".join(f"{a.name}=v{a.version}" for a in dep.arms)
    typer.echo(f"Serving deployment {dep.name} of {dep.model} (revision {dep.revision}, "
               f"{describe_strategy(dep.strategy)}; arms {arms}) on http://{host}:{port} "
               f"with {workers} worker{'s' if workers > 1 else ''}: /predict, "
               f"/v2/models/{dep.model}/infer, /feedback, /metrics", err=True)
    serve_deployment(name, config, options=options, host=host, port=port, workers=workers,
                     log_level=log_level)


def analyze(
    name: str = typer.Argument(..., help="Deployment name."),
    metric: AnalyzeMetric = typer.Option(AnalyzeMetric.reward, "--metric",
                                         case_sensitive=False,
                                         help="reward (mean of the feedback rewards) or "
                                         "accuracy (share of labels equal to the "
                                         "prediction)."),
    confidence: float = typer.Option(0.95, "--confidence", help="Confidence level of the "
                                     "intervals (and 1 - the significance level)."),
    since: str | None = typer.Option(None, "--since", metavar="DATE",
                                     help="Only traffic at or after this ISO date/time."),
    output: Output = output_option(),
) -> None:
    """Compare the arms of a deployment on a metric from its logged traffic and feedback.

    Each arm is compared with the stable (first) arm: the difference with a confidence
    interval and a p-value (Welch's t-test for rewards, a two-proportion z-test for
    accuracy), and a verdict in words.
    """
    from shipyard.rollout import analyze_deployment

    result = analyze_deployment(name, metric=metric.value, confidence=confidence,
                                since=since)
    if output is Output.json:
        from ._output import print_json

        print_json(_as_json(result))
        return
    _print_analysis(result)


def _as_json(result: ArmAnalysis) -> dict[str, object]:
    from dataclasses import asdict

    return {"deployment": result.deployment, "metric": result.metric,
            "confidence": result.confidence, "baseline": result.baseline,
            "arms": [asdict(a) for a in result.arms],
            "comparisons": {arm: c.model_dump() for arm, c in result.comparisons.items()},
            "verdict": result.verdict}


def _print_analysis(result: ArmAnalysis) -> None:
    from ._output import console, fmt_value, make_table

    out = console()
    what = "mean reward" if result.metric == "reward" else "accuracy"
    arms = make_table(f"{result.deployment}: {what} per arm (baseline {result.baseline})",
                      ["arm", "versions", "predictions", "n", what], no_wrap=["arm"])
    for a in result.arms:
        arms.add_row(a.arm, ", ".join(f"v{v}" for v in a.versions), str(a.predictions),
                     str(a.n), fmt_value(a.mean))
    out.print(arms)
    if result.comparisons:
        level = f"{result.confidence:.0%}"
        table = make_table(f"Difference from {result.baseline}",
                           ["arm", "difference", f"{level} interval", "p-value", "test"],
                           no_wrap=["arm"])
        for arm, c in result.comparisons.items():
            table.add_row(arm, f"{c.diff:+.4g}", f"[{c.ci_low:+.4g}, {c.ci_high:+.4g}]",
                          f"{c.p_value:.3g}", c.test)
        out.print(table)
    for line in result.verdicts:
        out.print(line, markup=False)
