"""MLflow side of ``bench/registry.py``; runs in ``bench/.venvs/mlflow``.

``python _registry_worker_mlflow.py --spec JSON --workdir DIR --out FILE``: the tracking and
registry store is ``sqlite:///DIR/mlflow.db`` with artifacts below DIR (the driver starts us
with cwd=DIR). Only the calls between the clock calls are timed; fitting, setup and the
checks are not.
"""

from __future__ import annotations

import importlib.metadata as md
from typing import Any

from _common import clock, summary

from registry import alias_targets, fit_model, predictions_digest, worker_main

#: What MLflow's error message asks for before it saves a random forest as skops.
TRUSTED = ["sklearn.tree._tree.Tree"]


def bench(spec: dict[str, Any], workdir: str) -> dict[str, Any]:
    import mlflow
    import mlflow.pyfunc
    import mlflow.sklearn

    mlflow.set_tracking_uri(f"sqlite:///{workdir}/mlflow.db")
    mlflow.set_experiment("registry")
    name, alias = spec["name"], spec["alias"]
    uri = f"models:/{name}@{alias}"
    x, model = fit_model(spec["model"])
    example = x.iloc[:5]
    # What Shipyard records for this model, with mlflow in place of shipyard-mlops.
    pins = [f"{d}=={md.version(d)}" for d in
            ("mlflow", "numpy", "pandas", "scikit-learn", "scipy", "joblib")]

    # MLflow 3.17 saves in the skops format by default, which refuses a random forest unless
    # its tree type is trusted; "pickle" is the format Shipyard uses.
    formats = {"skops": {"serialization_format": "skops", "skops_trusted_types": TRUSTED},
               "pickle": {"serialization_format": "pickle"}}

    def log(fmt: str, infer: bool) -> float:
        extra = {**formats[fmt], **({} if infer else {"pip_requirements": pins})}
        with mlflow.start_run():
            seconds, _ = clock(lambda: mlflow.sklearn.log_model(
                model, name="model", input_example=example, registered_model_name=name,
                **extra))
        return seconds

    # Untimed warm-ups (imports, creating the registered model): version 1 in the pickle
    # format, the one the alias ends on and the loads use; version 2 in skops.
    log_first = log("pickle", infer=False)
    log_first_skops = log("skops", infer=False)
    log_pickle = [log("pickle", infer=False) for _ in range(spec["log_repeats"])]
    log_skops = [log("skops", infer=False) for _ in range(spec["log_repeats"])]
    log_infer = [log("skops", infer=True) for _ in range(spec["infer_repeats"])]

    client = mlflow.MlflowClient()
    versions = len(client.search_model_versions(f"name='{name}'"))
    client.set_registered_model_alias(name, alias, 2)  # warm-up
    alias_times = [clock(lambda v=v: client.set_registered_model_alias(name, alias, v))[0]
                   for v in alias_targets(spec["alias_calls"])]
    client.get_model_version_by_alias(name, alias)  # warm-up
    resolve_times = []
    for _ in range(spec["resolve_calls"]):
        seconds, mv = clock(lambda: client.get_model_version_by_alias(name, alias))
        resolve_times.append(seconds)

    load_first, loaded = clock(lambda: mlflow.pyfunc.load_model(uri))
    load_times = []
    for _ in range(spec["load_repeats"]):
        seconds, loaded = clock(lambda: mlflow.pyfunc.load_model(uri))
        load_times.append(seconds)
    got, want = loaded.predict(x), model.predict(x)
    skops_uri = f"models:/{name}/2"
    skops_first, skops_loaded = clock(lambda: mlflow.pyfunc.load_model(skops_uri))
    skops_times = []
    for _ in range(spec["load_repeats"]):
        seconds, skops_loaded = clock(lambda: mlflow.pyfunc.load_model(skops_uri))
        skops_times.append(seconds)
    mismatches = int((got != want).sum()) + int((skops_loaded.predict(x) != want).sum())
    row = x.iloc[:1]
    return {
        "sizes": {k: spec[k] for k in ("log_repeats", "infer_repeats")},
        "log_first_s": log_first, "log_first_skops_s": log_first_skops,
        "log": summary(log_pickle), "log_s": log_pickle,
        "log_skops": summary(log_skops), "log_skops_s": log_skops,
        "log_infer": summary(log_infer), "log_infer_s": log_infer, "pip_requirements": pins,
        "versions": versions,
        "alias": summary(alias_times),
        "alias_version": int(client.get_registered_model(name).aliases[alias]),
        "resolve": summary(resolve_times), "resolved_version": int(mv.version),
        "load_first_s": load_first, "load_warm": summary(load_times), "load_s": load_times,
        "load_skops_first_s": skops_first, "load_skops_warm": summary(skops_times),
        "load_mismatches": mismatches,
        "predictions_sha256": predictions_digest(got),
        "row": row.to_dict(orient="list"), "row_prediction": int(model.predict(row)[0]),
    }


if __name__ == "__main__":
    worker_main(bench)
