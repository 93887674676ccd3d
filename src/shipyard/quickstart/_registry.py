"""The registry step: register the best candidate, make it ``champion``, show its lineage."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shipyard import errors

if TYPE_CHECKING:
    from shipyard.models import LoadedModel

    from ._run import QuickstartContext

__all__ = ["register_champion", "MODEL_NAME"]

MODEL_NAME = "credit-risk"


def register_champion(ctx: QuickstartContext) -> None:
    """Register the best run's model as the next version of ``credit-risk`` and alias it."""
    from shipyard.registry import lineage_tree

    uri = ctx.extras.get("model_uris", {}).get(ctx.best_run_id)
    if uri is None:
        raise errors.Conflict("the registry step needs a trained best model: run train first")
    registry = ctx.client.registry
    version = registry.register(uri, MODEL_NAME,
                                description="Probability of default for loan applications")
    registry.set_alias(MODEL_NAME, "champion", version.version,
                       reason="best validation ROC AUC in the quickstart")
    ctx.extras["champion"] = version
    ctx.console.print(f"Registered [bold]{MODEL_NAME} v{version.version}[/] "
                      f"({version.flavor}, digest {version.digest[:12]}) and set "
                      f"[bold]{MODEL_NAME}@champion[/] → v{version.version}")
    loaded = registry.load_model(f"models:/{MODEL_NAME}@champion")
    assert ctx.data is not None
    sample = ctx.data.head(3)
    proba = loaded.predict_proba(sample[list(_input_columns(loaded))])[:, 1]
    ctx.console.print("Loaded it back by alias and scored three applications: "
                      + ", ".join(f"{p:.1%}" for p in proba))
    ctx.console.print(lineage_tree(registry.lineage(f"models:/{MODEL_NAME}@champion")))


def _input_columns(loaded: LoadedModel) -> list[str]:
    sig = loaded.signature
    if sig is None or not isinstance(sig.inputs, list):
        return []
    return [c.name for c in sig.inputs]
