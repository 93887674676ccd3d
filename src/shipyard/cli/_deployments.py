"""``shipyard deployments …``: rollouts of a model's versions — create, change, promote.

A deployment routes traffic between named arms (``--arm champion=@champion --arm
challenger=3``) with one strategy (single, shadow, canary, ab, bandit) under guards
(``--guard "error_rate<=0.01"``, or relative to the stable arm: ``--guard
"accuracy>=stable-0.02"``). Strategy options left out take their defaults from the arms'
order: the first arm is the stable/primary one. ``--file spec.yaml`` gives the same
spec as YAML; options on the command line override the file.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from ._options import Output, output_option

if TYPE_CHECKING:
    from shipyard.deployments import Decision, Deployment, DeploymentService

__all__ = ["app"]

app = typer.Typer(help="Deployments: shadow, canary, A/B and bandit rollouts of model versions.",
                  no_args_is_help=True)


class StrategyKind(StrEnum):
    single = "single"
    shadow = "shadow"
    canary = "canary"
    ab = "ab"
    bandit = "bandit"


class Algorithm(StrEnum):
    thompson = "thompson"
    epsilon_greedy = "epsilon_greedy"


def _service() -> DeploymentService:
    from shipyard.client import Client

    return Client().deployments


def _bad(message: str, field: str) -> Exception:
    from shipyard import errors

    return errors.InvalidInput(message, field=field)


# -- spec options (create and update share them) -------------------------------------------------

_ARM = typer.Option(None, "--arm", metavar="NAME=REF",
                    help="An arm: NAME=REF, REF a version (3), 'latest' or an alias "
                         "(@champion). Repeat for each arm; the first is the stable one.")
_STRATEGY = typer.Option(None, "--strategy", case_sensitive=False,
                         help="single, shadow, canary, ab or bandit.")
_PERCENT = typer.Option(None, "--percent", help="Canary: percent of traffic to the canary.")
_STEPS = typer.Option(None, "--steps", metavar="P1,P2,…",
                      help="Canary: the percents it steps through, e.g. 10,25,50,100.")
_INTERVAL = typer.Option(None, "--step-interval", metavar="SECONDS",
                         help="Canary: seconds between steps (default 300).")
_STABLE = typer.Option(None, "--stable", help="Canary: the stable arm (default: the first).")
_CANARY = typer.Option(None, "--canary", help="Canary: the canary arm (default: the second).")
_STICKY = typer.Option(None, "--sticky/--no-sticky",
                       help="Canary: keep a routing key on one arm (default: sticky).")
_PRIMARY = typer.Option(None, "--primary",
                        help="Shadow/single: the arm that answers (default: the first).")
_SHADOW = typer.Option(None, "--shadow", help="Shadow: an arm that gets a copy (repeat; "
                                              "default: every arm but the primary).")
_WEIGHTS = typer.Option(None, "--weights", metavar="A=W,B=W",
                        help="A/B: weights per arm, e.g. a=50,b=50 (default: equal).")
_ALGORITHM = typer.Option(None, "--algorithm", case_sensitive=False,
                          help="Bandit: thompson or epsilon_greedy.")
_EPSILON = typer.Option(None, "--epsilon", help="Bandit: exploration rate (default 0.1).")
_REWARD = typer.Option(None, "--reward", help="Bandit: the feedback field that is the reward.")
_GUARD = typer.Option(None, "--guard", metavar="METRIC<=LIMIT",
                      help="A guard, e.g. \"error_rate<=0.01\", \"accuracy>=0.9@500\" "
                           "(@: minimum samples), or relative to the stable arm: "
                           "\"accuracy>=stable-0.02\" (difference), "
                           "\"latency_p99_ms<=stable*1.2\" (ratio). Repeat for each.")
_MIN_SAMPLES = typer.Option(None, "--min-samples",
                            help="Samples a guard needs before it counts (default 100).")
_FILE = typer.Option(None, "--file", "-f", exists=False, dir_okay=False,
                     help="A YAML spec file (model, arms, strategy, guards, auto).")


def _pairs(text: str, what: str, field: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise _bad(f"invalid {what} {part!r}: write NAME=VALUE", field)
        out[key.strip()] = value.strip()
    return out


def _arms(values: list[str] | None) -> dict[str, str] | None:
    if not values:
        return None
    arms: dict[str, str] = {}
    for value in values:
        pair = _pairs(value, "arm", "arms")
        if len(pair) != 1:
            raise _bad(f"invalid arm {value!r}: write one NAME=REF per --arm", "arms")
        arms.update(pair)
    return arms


def _numbers(text: str, field: str) -> list[float]:
    try:
        return [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise _bad(f"invalid --{field} {text!r}: write numbers separated by commas",
                   field) from None


def _strategy(kind: StrategyKind | None, base: dict[str, Any] | None, arm_names: list[str],
              opts: dict[str, Any]) -> dict[str, Any] | None:
    """The strategy dict from the options: a fresh one for ``kind``, else ``base`` with the
    options given laid over it (None: nothing to change)."""
    given = {k: v for k, v in opts.items() if v is not None and v != []}
    if kind is None and not given:
        return None
    if kind is None and base is None:
        raise _bad("give --strategy (single, shadow, canary, ab or bandit)", "strategy")
    spec = dict(base or {}) if kind is None or (base and base.get("kind") == kind) else {}
    spec["kind"] = str(kind or spec["kind"])
    first, rest = (arm_names[0] if arm_names else None), arm_names[1:]
    if spec["kind"] == "single":
        spec["arm"] = given.get("primary") or spec.get("arm") or first
    elif spec["kind"] == "shadow":
        spec["primary"] = given.get("primary") or spec.get("primary") or first
        spec["shadows"] = given.get("shadow") or spec.get("shadows") or [
            a for a in arm_names if a != spec["primary"]]
    elif spec["kind"] == "canary":
        spec["stable"] = given.get("stable") or spec.get("stable") or first
        spec["canary"] = given.get("canary") or spec.get("canary") or next(
            (a for a in arm_names if a != spec["stable"]), rest[0] if rest else None)
        if spec["canary"] is None:
            raise _bad("a canary needs a second arm: add --arm NAME=REF", "strategy.canary")
        if "steps" in given:
            spec["steps"] = _numbers(given["steps"], "steps")
        if "percent" in given:
            spec["percent"] = given["percent"]
        elif "percent" not in spec:
            if not spec.get("steps"):
                raise _bad("a canary needs --percent (or --steps: it starts at the first)",
                           "strategy.percent")
            spec["percent"] = spec["steps"][0]
        for opt, key in (("step_interval", "step_interval_s"), ("sticky", "sticky")):
            if opt in given:
                spec[key] = given[opt]
    elif spec["kind"] == "ab":
        if "weights" in given:
            pairs = _pairs(given["weights"], "weight", "strategy.weights")
            spec["weights"] = {a: _numbers(w, "weights")[0] for a, w in pairs.items()}
        spec.setdefault("weights", dict.fromkeys(arm_names, 1.0))
    else:
        spec.setdefault("arms", list(arm_names))
        for opt in ("algorithm", "epsilon", "reward"):
            if opt in given:
                spec[opt] = str(given[opt]) if opt == "algorithm" else given[opt]
    return spec


def _spec_from(file: Path | None, arm: list[str] | None, strategy: StrategyKind | None,
               guard: list[str] | None, min_samples: int | None,
               base_strategy: dict[str, Any] | None, base_arms: list[str],
               opts: dict[str, Any]) -> dict[str, Any]:
    from shipyard.deployments import load_spec_file, parse_guard

    spec = load_spec_file(file) if file is not None else {}
    arms = _arms(arm)
    if arms is not None:
        spec["arms"] = arms
    names = [str(a) for a in spec.get("arms", {})] or base_arms
    built = _strategy(strategy, spec.get("strategy") or base_strategy, names, opts)
    if built is not None:
        spec["strategy"] = built
    if guard:
        spec["guards"] = [parse_guard(g, min_samples=min_samples) for g in guard]
    elif min_samples is not None and "guards" in spec:
        spec["guards"] = [{**g, "min_samples": min_samples} if isinstance(g, dict) else g
                          for g in spec["guards"]]
    return spec


# -- commands ---------------------------------------------------------------------------------

@app.command("create")
def create(name: str = typer.Argument(..., help="Deployment name."),
           model: str = typer.Option(None, "--model", "-m", help="Registered model name."),
           arm: list[str] = _ARM, strategy: StrategyKind = _STRATEGY,
           percent: float = _PERCENT, steps: str = _STEPS, step_interval: float = _INTERVAL,
           stable: str = _STABLE, canary: str = _CANARY, sticky: bool = _STICKY,
           primary: str = _PRIMARY, shadow: list[str] = _SHADOW, weights: str = _WEIGHTS,
           algorithm: Algorithm = _ALGORITHM, epsilon: float = _EPSILON, reward: str = _REWARD,
           guard: list[str] = _GUARD, min_samples: int = _MIN_SAMPLES,
           manual: bool = typer.Option(False, "--manual",
                                       help="No automatic promote/rollback: decide by hand."),
           file: Path = _FILE, output: Output = output_option()) -> None:
    """Create a deployment of a model's versions."""
    opts = dict(percent=percent, steps=steps, step_interval=step_interval, stable=stable,
                canary=canary, sticky=sticky, primary=primary, shadow=shadow, weights=weights,
                algorithm=algorithm, epsilon=epsilon, reward=reward)
    spec = _spec_from(file, arm, strategy, guard, min_samples, None, [], opts)
    if spec.pop("name", name) != name:
        raise _bad(f"the spec file names deployment {spec.get('name')!r}, not {name!r}", "name")
    spec["model"] = model or spec.get("model")
    if not spec["model"]:
        raise _bad("give --model (or 'model:' in the spec file)", "model")
    if not spec.get("arms"):
        raise _bad("give at least one --arm NAME=REF", "arms")
    if "strategy" not in spec:
        spec["strategy"] = _strategy(StrategyKind.single, None, list(spec["arms"]), {})
    if manual:
        spec["auto"] = False
    dep = _service().create(name, **spec)
    _done(dep, f"created deployment {dep.name} (revision {dep.revision})", output)


@app.command("update")
def update(name: str = typer.Argument(..., help="Deployment name."),
           arm: list[str] = _ARM, strategy: StrategyKind = _STRATEGY,
           percent: float = _PERCENT, steps: str = _STEPS, step_interval: float = _INTERVAL,
           stable: str = _STABLE, canary: str = _CANARY, sticky: bool = _STICKY,
           primary: str = _PRIMARY, shadow: list[str] = _SHADOW, weights: str = _WEIGHTS,
           algorithm: Algorithm = _ALGORITHM, epsilon: float = _EPSILON, reward: str = _REWARD,
           guard: list[str] = _GUARD, min_samples: int = _MIN_SAMPLES,
           auto: bool = typer.Option(None, "--auto/--manual",
                                     help="Automatic promote/rollback on or off."),
           file: Path = _FILE, reason: str = typer.Option("", "--reason",
                                                         help="Recorded with the decision."),
           output: Output = output_option()) -> None:
    """Change a deployment's arms, strategy, guards or mode (a new revision)."""
    service = _service()
    current = service.get(name)
    opts = dict(percent=percent, steps=steps, step_interval=step_interval, stable=stable,
                canary=canary, sticky=sticky, primary=primary, shadow=shadow, weights=weights,
                algorithm=algorithm, epsilon=epsilon, reward=reward)
    spec = _spec_from(file, arm, strategy, guard, min_samples,
                      current.strategy.model_dump(mode="json"), current.arm_names, opts)
    spec.pop("name", None)
    if spec.pop("model", current.model) != current.model:
        raise _bad(f"deployment {name!r} serves model {current.model!r}; the model of a "
                   "deployment cannot change", "model")
    if auto is not None:
        spec["auto"] = auto
    dep = service.update(name, reason=reason, **spec)
    _done(dep, f"updated deployment {dep.name} (revision {dep.revision})", output)


@app.command("promote")
def promote(name: str = typer.Argument(..., help="Deployment name."),
            arm: str = typer.Argument(..., help="The arm that takes all traffic."),
            reason: str = typer.Option("", "--reason", help="Recorded with the decision.")
            ) -> None:
    """Promote ARM: it serves all traffic, and the model's alias moves to its version."""
    service = _service()
    dep = service.promote(name, arm, evidence={"manual": True}, reason=reason)
    last = service.decisions(name, limit=1)[-1]
    typer.echo(f"promoted {arm} (v{dep.arm(arm).version}) in {name}: {last.reason}")


@app.command("rollback")
def rollback(name: str = typer.Argument(..., help="Deployment name."),
             reason: str = typer.Option("", "--reason", help="Recorded with the decision.")
             ) -> None:
    """Send all traffic back to the stable/primary arm."""
    dep = _service().rollback(name, evidence={"manual": True}, reason=reason)
    typer.echo(f"rolled back {name}: all traffic to {dep.stable_arm} "
               f"(v{dep.arm(dep.stable_arm).version})")


@app.command("stop")
def stop(name: str = typer.Argument(..., help="Deployment name."),
         reason: str = typer.Option("", "--reason", help="Recorded with the decision.")) -> None:
    """Stop a deployment (its router stops serving it until it is updated)."""
    _service().stop(name, reason=reason)
    typer.echo(f"stopped {name}")


@app.command("list")
def list_deployments(output: Output = output_option()) -> None:
    """List deployments with their strategy and status."""
    from shipyard.deployments import describe_strategy

    from ._output import console, fmt_time, make_table, print_json

    found = _service().list()
    if output is Output.json:
        print_json([d.model_dump(mode="json") for d in found])
        return
    table = make_table("Deployments", ["name", "model", "arms", "strategy", "status",
                                       "revision", "updated"], no_wrap=["name"])
    for d in found:
        table.add_row(d.name, d.model, ", ".join(f"{a.name}=v{a.version}" for a in d.arms),
                      describe_strategy(d.strategy), d.status, str(d.revision),
                      fmt_time(d.updated_at))
    console().print(table)


@app.command("show")
def show(name: str = typer.Argument(..., help="Deployment name."),
         decisions: int = typer.Option(5, "--decisions", min=1,
                                       help="How many of the last decisions to show."),
         output: Output = output_option()) -> None:
    """Show a deployment: arms and versions, strategy, guards, arm stats, last decisions."""
    from ._output import print_json

    service = _service()
    dep = service.get(name)
    stats = service.arm_stats(name)
    last = service.decisions(name, limit=decisions)
    if output is Output.json:
        print_json({**dep.model_dump(mode="json"),
                    "arm_stats": {k: v.model_dump(mode="json") for k, v in stats.items()},
                    "decisions": [d.model_dump(mode="json") for d in last]})
        return
    _print_deployment(dep, stats, last)


@app.command("history")
def history(name: str = typer.Argument(..., help="Deployment name."),
            output: Output = output_option()) -> None:
    """Every decision of a deployment: what changed, who, why, on what evidence."""
    from ._output import print_json

    found = _service().decisions(name)
    if output is Output.json:
        print_json([d.model_dump(mode="json") for d in found])
        return
    _print_decisions(found, f"History of {name}")


# The live router's commands (``serve``, ``analyze``) are registered on ``app`` here by the
# rollout CLI: keep them below this line.
from ._rollout_cli import analyze as _analyze  # noqa: E402 - registered after the above
from ._rollout_cli import serve as _serve  # noqa: E402

app.command("serve")(_serve)
app.command("analyze")(_analyze)


# -- printing ---------------------------------------------------------------------------------

def _done(dep: Deployment, message: str, output: Output) -> None:
    from ._output import print_json

    if output is Output.json:
        print_json(dep.model_dump(mode="json"))
    else:
        typer.echo(message)


def _print_deployment(dep: Deployment, stats: dict[str, Any], last: list[Decision]) -> None:
    from rich.console import Group
    from rich.text import Text

    from shipyard.deployments import describe_strategy

    from ._output import console, fmt_time, fmt_value, make_table

    head = Text.assemble(
        (dep.name, "bold"), f"  model {dep.model} · {dep.status} · revision {dep.revision} · ",
        "automatic promote/rollback" if dep.auto else "manual decisions",
        f"\ncreated {fmt_time(dep.created_at)} by {dep.created_by}, "
        f"updated {fmt_time(dep.updated_at)}\nstrategy: {describe_strategy(dep.strategy)}")
    arms = make_table("Arms", ["arm", "ref", "version", "serving", "pulls", "rewards",
                               "mean reward", "success rate"], no_wrap=["arm"])
    serving = dep.serving_arms
    for a in dep.arms:
        s = stats.get(a.name)
        arms.add_row(a.name, a.ref, f"v{a.version}", "yes" if a.name in serving else "",
                     str(s.pulls if s else 0), str(s.rewards if s else 0),
                     fmt_value(s.reward_mean if s else None),
                     fmt_value(s.success_rate if s else None))
    guards = Text("guards: " + (", ".join(f"{g} (min {g.min_samples} samples)"
                                          for g in dep.guards) or "none"))
    console().print(Group(head, arms, guards))
    _print_decisions(last, "Last decisions")


def _print_decisions(found: list[Decision], title: str) -> None:
    import json

    from ._output import console, fmt_time, make_table

    table = make_table(title, ["when", "revision", "action", "arm", "by", "reason",
                               "evidence"], no_wrap=["when"])
    for d in found:
        evidence = json.dumps(d.evidence, sort_keys=True, default=str) if d.evidence else ""
        table.add_row(fmt_time(d.time), str(d.revision), d.action, d.arm or "", d.actor,
                      d.reason, evidence)
    console().print(table)
