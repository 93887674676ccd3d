"""The rollout step: serve the champion, canary the runner-up, and let the router decide.

Everything runs in this process: the router (``shipyard.rollout``) behind the model
server's app, reached through httpx's ASGI transport, so no port is opened. The runner-up
candidate of the train step is registered as the challenger; the deployment ``credit-risk``
first serves ``@production`` (the champion) alone, then is updated into a canary with
guards, while validation applications arrive (keyed by customer, so each customer stays on
one version) and their true outcome comes back as feedback. The accuracy guard is relative
(``accuracy>=stable-0.02``): the challenger must stay within two points of the champion's
accuracy on the same live traffic. The router's control loop steps the canary up while it
does and promotes it, or rolls it back as soon as a guard breaches — the runner-up is
usually less accurate, so the usual story is the router protecting production — and each
decision is recorded with both arms' evidence.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from shipyard import errors

from ._data import FEATURES, ID_COLUMN, LABEL
from ._registry import MODEL_NAME
from ._train import VALID_FRACTION

if TYPE_CHECKING:
    import httpx
    import pandas as pd

    from shipyard.deployments import Deployment
    from shipyard.rollout import RouterState

    from ._run import QuickstartContext

__all__ = ["run_rollout", "DEPLOYMENT", "PRODUCTION_ALIAS", "GUARDS"]

DEPLOYMENT = "credit-risk"
#: The alias that names what serves (the champion is the best offline; production is live).
PRODUCTION_ALIAS = "production"
#: The challenger must not fail requests, and must be about as accurate as what serves now:
#: an absolute ``accuracy>=0.7`` would promote a challenger clearly worse than the champion.
GUARDS: list[dict[str, Any]] = [
    {"metric": "error_rate", "op": "<=", "threshold": 0.01, "min_samples": 25},
    {"metric": "accuracy", "op": ">=", "threshold": -0.02, "compare": "difference",
     "min_samples": 50}]
#: It ends at 50%, promoted there: the relative guard needs the stable arm to keep serving.
CANARY: dict[str, Any] = {
    "kind": "canary", "stable": "production", "canary": "challenger", "percent": 25,
    "steps": [25, 50], "step_interval_s": 0.2}
#: How long the canary may take before the step gives up waiting (it takes ~2 s).
DEADLINE_S = 30.0


def run_rollout(ctx: QuickstartContext) -> None:
    """Register the challenger, serve, canary it, and print the router's decision."""
    champion = ctx.extras.get("champion")
    if champion is None or ctx.data is None:
        raise errors.Conflict("the rollout step needs a registered champion: run the "
                              "register step first")
    registry = ctx.client.registry
    runner_up = _runner_up(ctx)
    challenger = registry.register(ctx.extras["model_uris"][runner_up], MODEL_NAME,
                                   description="Runner-up candidate, tried as a canary")
    registry.set_alias(MODEL_NAME, "challenger", challenger.version,
                       reason="runner-up of the quickstart's model selection")
    registry.set_alias(MODEL_NAME, PRODUCTION_ALIAS, champion.version,
                       reason="the champion goes to production first")
    ctx.extras["challenger"] = challenger
    ctx.client.deployments.create(DEPLOYMENT, MODEL_NAME,
                                  {"production": f"@{PRODUCTION_ALIAS}"},
                                  {"kind": "single", "arm": "production"})
    asyncio.run(_tour(ctx, champion.version, challenger.version))
    _print_decisions(ctx)


def _runner_up(ctx: QuickstartContext) -> str:
    """The candidate run with the second best validation ROC AUC."""
    tracking = ctx.client.tracking
    others = [r for r in ctx.run_ids if r != ctx.best_run_id]
    if not others:
        raise errors.Conflict("the rollout step needs a second candidate to try")
    return max(others, key=lambda r: tracking.get_run(r).metrics.get("roc_auc", 0.0))


async def _tour(ctx: QuickstartContext, champion: int, challenger: int) -> None:
    import httpx

    from shipyard.deployments import Guard
    from shipyard.rollout import RouterOptions, RouterState, create_router_app
    from shipyard.serving import ServingConfig

    out = ctx.console
    router = RouterState(DEPLOYMENT, ServingConfig(max_wait_ms=1.0,
                                                   predlog_flush_interval=0.2),
                         ctx.home, client=ctx.client,
                         options=RouterOptions(refresh_interval=0.1, control_interval=0.1,
                                               flush_interval=0.1, seed=ctx.seed))
    assert ctx.data is not None
    traffic = _Traffic(ctx.data)
    transport = httpx.ASGITransport(app=create_router_app(router))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://router") as http:
            served = await traffic.send(http, 100, feedback=False)
            out.print(f"Serving deployment [bold]{DEPLOYMENT}[/] in-process: 100 applications "
                      f"answered by {_versions(served)} ([bold]@{PRODUCTION_ALIAS}[/] = "
                      f"champion v{champion})")
            await asyncio.to_thread(
                ctx.client.deployments.update, DEPLOYMENT,
                arms={"production": f"@{PRODUCTION_ALIAS}", "challenger": "@challenger"},
                strategy=CANARY, guards=[Guard.model_validate(g) for g in GUARDS],
                reason="try the runner-up as a canary")
            guards = [str(Guard.model_validate(g)) for g in GUARDS]
            out.print(f"Updated it into a canary: challenger v{challenger} gets 25% of "
                      "customers (sticky by customer id), stepping to 50% and then promoted "
                      f"while the guards hold: {', '.join(guards)} (no failed requests, and "
                      "accuracy within 0.02 of the champion's on live traffic)", markup=False)
            await _until_decided(ctx, router, traffic, http)
    finally:
        await router.close()


async def _until_decided(ctx: QuickstartContext, router: RouterState, traffic: _Traffic,
                         http: httpx.AsyncClient) -> None:
    """Send applications and their outcomes until the router promotes or rolls back."""
    out = ctx.console
    seen = router.view.revision
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        counts = await traffic.send(http, 40, feedback=True)
        view = router.view
        if view.revision != seen:
            seen = view.revision
            strategy = view.deployment.strategy
            where = f"canary at {strategy.percent:g}%" if strategy.kind == "canary" \
                else view.deployment.status.replace("_", " ")
            out.print(f"  revision {seen}: {where}")
        if view.deployment.status != "active":
            return
        if not counts:
            await asyncio.sleep(0.05)
    out.print(f"No decision after {DEADLINE_S:g}s: the guards are still collecting samples.")


class _Traffic:
    """Validation applications as requests, keyed by customer, with their true outcome."""

    def __init__(self, data: pd.DataFrame) -> None:
        newest = data.sort_values("application_date").tail(
            max(50, int(len(data) * VALID_FRACTION)))
        self.records = newest[FEATURES].astype(object).to_dict("records")
        self.keys = [str(k) for k in newest[ID_COLUMN]]
        self.labels = [int(v) for v in newest[LABEL]]
        self.next = 0

    async def send(self, http: httpx.AsyncClient, n: int, *, feedback: bool) -> Counter[int]:
        """``n`` concurrent requests (micro-batched); the versions that answered."""
        picks = [(self.next + i) % len(self.records) for i in range(n)]
        self.next += n
        answers = await asyncio.gather(*(http.post(
            "/predict", json={"records": [self.records[i]], "probabilities": False},
            headers={"X-Shipyard-Routing-Key": self.keys[i]}) for i in picks))
        versions: Counter[int] = Counter()
        outcomes = []
        for i, answer in zip(picks, answers, strict=True):
            if answer.status_code != 200:
                continue
            body = answer.json()
            versions[body["model_version"]] += 1
            outcomes.append({"prediction_id": body["prediction_ids"][0],
                             "label": self.labels[i]})
        if feedback:
            await asyncio.gather(*(http.post("/feedback", json=o) for o in outcomes))
        return versions


def _versions(counts: Counter[int]) -> str:
    return ", ".join(f"v{v} ({n})" for v, n in sorted(counts.items()))


def _print_decisions(ctx: QuickstartContext) -> None:
    from rich import box
    from rich.table import Table

    service = ctx.client.deployments
    dep: Deployment = service.get(DEPLOYMENT)
    table = Table(title=f"Decisions of deployment {DEPLOYMENT}", title_justify="left",
                  header_style="bold", box=box.SIMPLE_HEAD)
    for column in ("rev", "action", "by", "reason"):
        table.add_column(column, overflow="fold")
    decisions = service.decisions(DEPLOYMENT)
    for d in decisions:
        table.add_row(str(d.revision), d.action, d.actor, d.reason)
    ctx.console.print(table)
    last = decisions[-1]
    if last.action in ("promote", "rollback") and last.actor == "router":
        arms: dict[str, Any] = last.evidence.get("arms", {})
        evidence = "; ".join(
            f"{arm}: accuracy {_fmt(e.get('accuracy'))} over {e.get('accuracy_samples', 0)}, "
            f"error rate {_fmt(e.get('error_rate'))}" for arm, e in arms.items()
            if e.get("requests"))
        verb = "promoted the challenger" if last.action == "promote" else \
            "rolled the challenger back"
        alias = ctx.client.registry.get_model(MODEL_NAME).aliases.get(PRODUCTION_ALIAS)
        ctx.console.print(f"[bold]Router decision:[/] {verb} ({evidence}). "
                          f"{MODEL_NAME}@{PRODUCTION_ALIAS} → v{alias}; status {dep.status}.")
        ctx.console.print(_moral(last.action), markup=False)
    ctx.extras["deployment"] = DEPLOYMENT
    ctx.console.print("Look closer:")
    for command in (f"shipyard deployments show {DEPLOYMENT}",
                    f"shipyard deployments history {DEPLOYMENT}",
                    f"shipyard deployments analyze {DEPLOYMENT} --metric accuracy",
                    f"shipyard deployments serve {DEPLOYMENT} --port 8080"):
        ctx.console.print(f"  {command}", soft_wrap=True, markup=False)


def _moral(action: str) -> str:
    """What the decision means, in a sentence."""
    if action == "rollback":
        return ("The router protected production: the challenger breached a guard on live "
                "traffic (the reason above says which, with both arms' numbers), so every "
                "customer is back on the champion.")
    return ("The challenger held every guard against the champion on live traffic, so it "
            f"now serves every customer and @{PRODUCTION_ALIAS} names it.")


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"
