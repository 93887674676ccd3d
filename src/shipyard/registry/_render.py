"""Lineage as a rich Tree, shared by the CLI and the quickstart."""

from __future__ import annotations

from typing import Any

from rich.tree import Tree

__all__ = ["lineage_tree"]


def lineage_tree(graph: dict[str, Any]) -> Tree:
    """A rich Tree of :meth:`RegistryService.lineage`'s graph, for terminals."""
    mv = graph["model_version"]
    aliases = f"  aliases: {', '.join(mv['aliases'])}" if mv["aliases"] else ""
    root = Tree(f"[bold]{mv['name']} v{mv['version']}[/] ({mv['flavor']}, digest "
                f"{mv['digest'][:12]}){aliases}")
    run = graph.get("run")
    if run:
        node = root.add(f"run {run['run_id'][:12]} [dim]{run['run_name']}[/] ({run['status']})")
        if run["params"]:
            node.add("params: " + ", ".join(f"{k}={v}" for k, v in sorted(run["params"].items())))
        if run["metrics"]:
            node.add("metrics: " + ", ".join(f"{k}={v:.4g}" for k, v in
                                             sorted(run["metrics"].items())))
        for ds in run["datasets"]:
            node.add(f"dataset {ds['name']} ({ds['context']}) digest {ds['digest'][:12]}, "
                     f"{ds.get('num_rows') or '?'} rows")
    for ref in graph.get("features") or []:
        root.add(f"features {ref}")
    code = graph.get("code") or {}
    root.add(f"code {code.get('commit') or 'not in a git work tree'}"
             f"{' (dirty)' if code.get('dirty') else ''}")
    return root
