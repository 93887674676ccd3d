"""Deployment packaging: a self-contained folder to build an image and run it on Kubernetes.

``package_model`` writes the verified model folder, a pinned ``requirements.txt``, a
``Dockerfile`` that serves the model with Shipyard's server, and Kubernetes manifests
(Deployment with probes and resource requests, Service, HorizontalPodAutoscaler).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from shipyard import errors

from ._service import RegistryService

__all__ = ["package_model", "PackageOptions"]

PORT = 8080


class PackageOptions:
    """Knobs of the generated manifests (sensible defaults for a small model)."""

    def __init__(self, *, replicas: int = 2, max_replicas: int = 6, cpu: str = "500m",
                 memory: str = "512Mi", cpu_limit: str = "1", memory_limit: str = "1Gi",
                 target_cpu_percent: int = 70, image: str | None = None) -> None:
        if not 1 <= replicas <= max_replicas:
            raise errors.InvalidInput("need 1 <= replicas <= max_replicas", field="replicas")
        self.replicas = replicas
        self.max_replicas = max_replicas
        self.cpu = cpu
        self.memory = memory
        self.cpu_limit = cpu_limit
        self.memory_limit = memory_limit
        self.target_cpu_percent = target_cpu_percent
        self.image = image


def _k8s_name(text: str) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:50].strip("-")
    return name or "model"


def package_model(registry: RegistryService, uri: str, out: str | Path,
                  options: PackageOptions | None = None) -> dict[str, Path]:
    """Write the deployment folder for ``uri`` (a models:/ URI) into the empty folder ``out``."""
    opts = options or PackageOptions()
    target = Path(out)
    if target.exists() and any(target.iterdir()):
        raise errors.AlreadyExists(f"output folder {target} is not empty", field="out")
    version = registry.resolve(uri)
    loaded = registry.load_model(version.uri)  # verifies the digest before we copy
    target.mkdir(parents=True, exist_ok=True)
    shutil.copytree(loaded.path, target / "model")
    name = _k8s_name(f"{version.name}-v{version.version}")
    image = opts.image or f"{_k8s_name(version.name)}:v{version.version}"
    labels = {"app.kubernetes.io/name": _k8s_name(version.name),
              "app.kubernetes.io/version": f"v{version.version}",
              "app.kubernetes.io/managed-by": "shipyard"}
    files = {
        "requirements.txt": "\n".join(loaded.manifest.environment.get("requirements", []))
        + "\n",
        "Dockerfile": _dockerfile(version.name, version.version, version.digest,
                                  loaded.manifest.environment.get("python", "3.11")),
        "k8s/deployment.yaml": _yaml(_deployment(name, image, labels, version.digest, opts)),
        "k8s/service.yaml": _yaml(_service(name, labels)),
        "k8s/hpa.yaml": _yaml(_hpa(name, labels, opts)),
    }
    written = {}
    for rel, text in files.items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written[rel] = path
    written["model"] = target / "model"
    return written


def _yaml(doc: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(doc, sort_keys=False)


def _dockerfile(model: str, version: int, digest: str, python: str) -> str:
    minor = ".".join(python.split(".")[:2])
    return f"""\
# Serves {model} v{version} (model digest {digest[:12]}) with Shipyard's model server.
FROM python:{minor}-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /srv
COPY requirements.txt .
RUN pip install -r requirements.txt
COPY model/ /srv/model/
RUN useradd --uid 10001 --no-create-home shipyard
USER 10001
EXPOSE {PORT}
HEALTHCHECK --interval=15s --timeout=3s CMD python -c \\
  "import urllib.request; urllib.request.urlopen('http://127.0.0.1:{PORT}/health')"
CMD ["shipyard", "serve", "/srv/model", "--host", "0.0.0.0", "--port", "{PORT}"]
"""


def _deployment(name: str, image: str, labels: dict[str, str], digest: str,
                opts: PackageOptions) -> dict[str, Any]:
    probe = {"httpGet": {"path": "/health", "port": PORT}, "periodSeconds": 10,
             "timeoutSeconds": 2, "failureThreshold": 3}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels,
                     "annotations": {"shipyard.dev/model-digest": digest}},
        "spec": {
            "replicas": opts.replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/name": labels[
                "app.kubernetes.io/name"], "app.kubernetes.io/version": labels[
                "app.kubernetes.io/version"]}},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001},
                    "containers": [{
                        "name": "model",
                        "image": image,
                        "ports": [{"name": "http", "containerPort": PORT}],
                        "readinessProbe": {**probe, "httpGet": {"path": "/ready",
                                                                "port": PORT},
                                           "initialDelaySeconds": 5},
                        "livenessProbe": {**probe, "initialDelaySeconds": 15},
                        "resources": {
                            "requests": {"cpu": opts.cpu, "memory": opts.memory},
                            "limits": {"cpu": opts.cpu_limit, "memory": opts.memory_limit},
                        },
                    }],
                },
            },
        },
    }


def _service(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels},
        "spec": {"type": "ClusterIP",
                 "selector": {"app.kubernetes.io/name": labels["app.kubernetes.io/name"],
                              "app.kubernetes.io/version": labels["app.kubernetes.io/version"]},
                 "ports": [{"name": "http", "port": 80, "targetPort": PORT}]},
    }


def _hpa(name: str, labels: dict[str, str], opts: PackageOptions) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": opts.replicas,
            "maxReplicas": opts.max_replicas,
            "metrics": [{"type": "Resource", "resource": {
                "name": "cpu", "target": {"type": "Utilization",
                                          "averageUtilization": opts.target_cpu_percent}}}],
        },
    }
