"""Deployment packaging: the folder loads, and the manifests match Kubernetes' schemas."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.tree import DecisionTreeClassifier

import shipyard as sy
from shipyard import errors
from shipyard.client import Client
from shipyard.models import load_model_dir
from shipyard.registry import PackageOptions, package_model

K8S_VERSION = "1.30"


@pytest.fixture
def champion(client: Client) -> tuple[Client, DecisionTreeClassifier, pd.DataFrame]:
    X = pd.DataFrame({"income": np.linspace(10, 90, 40), "debt": np.linspace(5, 1, 40)})
    model = DecisionTreeClassifier(max_depth=2).fit(X, (X["income"] > 50).astype(int))
    with sy.start_run(experiment="pack") as run:
        run.log_model(model, input_example=X.head(), registered_model_name="Credit_Risk")
    client.registry.set_alias("Credit_Risk", "champion", 1)
    return client, model, X


def test_package_writes_a_loadable_model_and_pinned_requirements(champion, tmp_path: Path):
    client, model, X = champion
    out = package_model(client.registry, "models:/Credit_Risk@champion", tmp_path / "pkg")
    loaded = load_model_dir(out["model"], client.registry.resolve("models:/Credit_Risk/1").digest)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    reqs = out["requirements.txt"].read_text().split()
    assert all("==" in r for r in reqs)
    assert any(r.startswith("scikit-learn==") for r in reqs)
    docker = out["Dockerfile"].read_text()
    assert "COPY model/ /srv/model/" in docker and "EXPOSE 8080" in docker


@pytest.mark.parametrize("manifest", ["deployment", "service", "hpa"])
def test_kubernetes_manifests_validate_against_the_schemas(champion, tmp_path: Path,
                                                           manifest: str) -> None:
    client, _, _ = champion
    out = package_model(client.registry, "models:/Credit_Risk@champion", tmp_path / "pkg",
                        PackageOptions(replicas=3, max_replicas=9))
    doc = yaml.safe_load(out[f"k8s/{manifest}.yaml"].read_text())
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    assert doc["metadata"]["name"] == "credit-risk-v1"  # a valid DNS-1123 name


def test_deployment_has_probes_resources_and_the_digest(champion, tmp_path: Path) -> None:
    client, _, _ = champion
    out = package_model(client.registry, "models:/Credit_Risk/1", tmp_path / "pkg")
    doc = yaml.safe_load(out["k8s/deployment.yaml"].read_text())
    container = doc["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert set(container["resources"]["requests"]) == {"cpu", "memory"}
    digest = client.registry.resolve("models:/Credit_Risk/1").digest
    assert doc["metadata"]["annotations"]["shipyard.dev/model-digest"] == digest


def test_a_broken_manifest_would_fail_validation() -> None:
    bad = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
           "spec": {"replicas": "three"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def test_refuses_a_non_empty_output_folder(champion, tmp_path: Path) -> None:
    client, _, _ = champion
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "keep.txt").write_text("mine")
    with pytest.raises(errors.AlreadyExists):
        package_model(client.registry, "models:/Credit_Risk/1", tmp_path / "pkg")
    assert [p.name for p in (tmp_path / "pkg").iterdir()] == ["keep.txt"]
