"""Shipyard side of ``bench/registry.py``; runs in the Shipyard interpreter.

``python _registry_worker_shipyard.py --spec JSON --workdir DIR --out FILE``: the store comes
from the environment the driver sets (``SHIPYARD_HOME``, ``SHIPYARD_DB``,
``SHIPYARD_ARTIFACTS``). Only the calls between the clock calls are timed; fitting, setup and
the checks are not.
"""

from __future__ import annotations

from typing import Any

from _common import clock, summary

from registry import alias_targets, fit_model, predictions_digest, worker_main


def bench(spec: dict[str, Any], workdir: str) -> dict[str, Any]:
    import shipyard as sy

    name, alias = spec["name"], spec["alias"]
    uri = f"models:/{name}@{alias}"
    x, model = fit_model(spec["model"])
    example = x.head()

    def log() -> float:
        with sy.start_run(experiment="registry") as run:
            seconds, _ = clock(lambda: run.log_model(model, input_example=example,
                                                     registered_model_name=name))
        return seconds

    log_first = log()  # version 1: imports, creates the registered model
    log_times = [log() for _ in range(spec["log_repeats"])]

    client = sy.Client()
    registry = client.registry
    versions = len(registry.search_versions(name=name))
    registry.set_alias(name, alias, 2)  # warm-up
    alias_times = [clock(lambda v=v: registry.set_alias(name, alias, v))[0]
                   for v in alias_targets(spec["alias_calls"])]
    registry.resolve(uri)  # warm-up
    resolve_times = []
    for _ in range(spec["resolve_calls"]):
        seconds, mv = clock(lambda: registry.resolve(uri))
        resolve_times.append(seconds)

    load_first, loaded = clock(lambda: sy.load_model(uri))
    load_times = []
    for _ in range(spec["load_repeats"]):
        seconds, loaded = clock(lambda: sy.load_model(uri))
        load_times.append(seconds)
    got, want = loaded.predict(x), model.predict(x)
    row = x.iloc[:1]
    return {
        "sizes": {"log_repeats": spec["log_repeats"]},
        "log_first_s": log_first, "log": summary(log_times), "log_s": log_times,
        "requirements": loaded.manifest.environment.get("requirements"),
        "versions": versions,
        "alias": summary(alias_times),
        "alias_version": registry.resolve(uri).version,
        "resolve": summary(resolve_times), "resolved_version": mv.version,
        "load_first_s": load_first, "load_warm": summary(load_times), "load_s": load_times,
        "load_mismatches": int((got != want).sum()),
        "predictions_sha256": predictions_digest(got),
        "row": row.to_dict(orient="list"), "row_prediction": int(model.predict(row)[0]),
    }


if __name__ == "__main__":
    worker_main(bench)
