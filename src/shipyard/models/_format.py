"""The on-disk model format: a folder with the flavor's files and ``shipyard-model.json``.

The manifest names the flavor, the signature, the environment and the SHA-256 of every other
file. The model's digest is the SHA-256 of the canonical manifest, so it covers every byte:
:func:`load_model_dir` recomputes it and refuses a folder that differs.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shipyard import errors
from shipyard.artifacts import sha256_file

from ._environment import capture_environment
from ._signature import Signature, infer_signature
from .flavors import Flavor, flavor_for, get_flavor

__all__ = ["MANIFEST", "Manifest", "LoadedModel", "save_model", "load_model_dir",
           "manifest_digest"]

MANIFEST = "shipyard-model.json"
FORMAT_VERSION = 1


class Manifest(BaseModel):
    """What ``shipyard-model.json`` holds."""

    model_config = ConfigDict(frozen=True)
    format_version: int = FORMAT_VERSION
    flavor: str
    flavor_options: dict[str, Any] = Field(default_factory=dict)
    signature: Signature | None = None
    environment: dict[str, Any] = Field(default_factory=dict)
    has_predict_proba: bool = False
    files: dict[str, str] = Field(default_factory=dict, description="relative path → SHA-256")
    created_at: int = 0
    metadata: dict[str, Any] = Field(default_factory=dict)

    def canonical_json(self) -> bytes:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True,
                          separators=(",", ":")).encode()


def manifest_digest(manifest: Manifest) -> str:
    return hashlib.sha256(manifest.canonical_json()).hexdigest()


def save_model(model: Any, path: str | Path, *, flavor: str | None = None,
               input_example: Any = None, signature: Signature | None = None,
               extra_requirements: list[str] | None = None,
               metadata: dict[str, Any] | None = None) -> tuple[Manifest, str]:
    """Write ``model`` to the empty folder ``path``; returns (manifest, digest).

    The flavor is detected from the model unless named. With an ``input_example`` and no
    ``signature``, the signature is inferred from the example and the model's output on it.
    """
    target = Path(path)
    if target.exists() and any(target.iterdir()):
        raise errors.AlreadyExists(f"model folder {target} is not empty", field="path")
    fl: Flavor = get_flavor(flavor) if flavor else flavor_for(model)
    with tempfile.TemporaryDirectory(dir=target.parent if target.parent.exists() else None) as tmp:
        staging = Path(tmp)
        options = fl.save(model, staging)
        native = fl.load(staging, options)
        if signature is None and input_example is not None:
            signature = _infer(fl, native, options, input_example)
        if input_example is not None:
            _write_example(staging, input_example)
        files = {p.relative_to(staging).as_posix(): sha256_file(p)[0]
                 for p in sorted(staging.rglob("*")) if p.is_file()}
        manifest = Manifest(
            flavor=fl.NAME, flavor_options=options, signature=signature,
            environment=capture_environment(fl.PACKAGES, extra_requirements or []),
            has_predict_proba=fl.has_proba(native, options), files=files,
            created_at=int(time.time() * 1000), metadata=metadata or {})
        (staging / MANIFEST).write_bytes(manifest.canonical_json())
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            target.rmdir()
        shutil.move(str(staging), str(target))
        staging.mkdir()  # TemporaryDirectory expects to remove something
    return manifest, manifest_digest(manifest)


def _infer(fl: Flavor, native: Any, options: dict[str, Any], example: Any) -> Signature:
    import numpy as np

    from ._signature import to_frame

    data = example if isinstance(example, np.ndarray) else to_frame(example)
    try:
        output = fl.predict(native, data, options)
    except Exception as exc:  # noqa: BLE001 - the example is the caller's; say what failed
        raise errors.InvalidInput(
            f"the model could not predict on input_example: {type(exc).__name__}: {exc}",
            field="input_example") from exc
    out = np.asarray(output) if not hasattr(output, "columns") else output
    return infer_signature(data, out)


def _write_example(staging: Path, example: Any) -> None:
    import numpy as np

    from ._signature import to_frame

    if isinstance(example, np.ndarray):
        (staging / "input_example.json").write_text(json.dumps(example.tolist()))
    else:
        frame = to_frame(example).head(5)
        (staging / "input_example.json").write_text(
            frame.to_json(orient="records", date_format="iso"))


class LoadedModel:
    """A loaded model with one calling convention, whatever its flavor.

    ``predict(data)`` takes a DataFrame, a dict of columns, a list of records or an array;
    the signature (when present) checks and converts it first. ``native`` is the library's
    own object.
    """

    def __init__(self, manifest: Manifest, native: Any, digest: str, path: Path) -> None:
        self.manifest = manifest
        self.native = native
        self.digest = digest
        self.path = path
        self._flavor = get_flavor(manifest.flavor)

    @property
    def flavor(self) -> str:
        return self.manifest.flavor

    @property
    def signature(self) -> Signature | None:
        return self.manifest.signature

    def _prepare(self, data: Any) -> Any:
        if self.signature is not None:
            return self.signature.enforce(data)
        import numpy as np

        from ._signature import to_frame

        return data if isinstance(data, np.ndarray) else to_frame(data)

    def predict(self, data: Any) -> Any:
        return self._flavor.predict(self.native, self._prepare(data), self.manifest.flavor_options)

    def predict_proba(self, data: Any) -> Any:
        if not self.manifest.has_predict_proba:
            raise errors.InvalidInput(f"this {self.flavor} model has no predict_proba",
                                      field="method")
        return self._flavor.predict_proba(self.native, self._prepare(data),
                                          self.manifest.flavor_options)

    def __repr__(self) -> str:
        return f"<LoadedModel flavor={self.flavor} digest={self.digest[:12]}>"


def read_manifest(path: Path) -> Manifest:
    file = path / MANIFEST
    if not file.is_file():
        raise errors.InvalidInput(f"{path} is not a Shipyard model folder (no {MANIFEST})",
                                  field="path")
    try:
        return Manifest.model_validate_json(file.read_bytes())
    except ValueError as exc:  # pydantic's ValidationError (bad JSON, wrong fields) included
        raise errors.IntegrityError(
            f"model file {MANIFEST} in {path} is not a valid manifest (corrupted or edited): "
            f"{exc}") from exc


def verify_dir(path: Path, expected_digest: str | None = None) -> tuple[Manifest, str]:
    """Check every file against the manifest and the manifest against ``expected_digest``."""
    manifest = read_manifest(path)
    digest = manifest_digest(manifest)
    if expected_digest is not None and digest != expected_digest:
        raise errors.IntegrityError(
            f"model at {path} has digest {digest}, but {expected_digest} was registered: "
            f"its {MANIFEST} (which lists every file's SHA-256) was modified after "
            "registration; refusing to load it")
    for rel, want in manifest.files.items():
        file = path / rel
        if not file.is_file():
            raise errors.IntegrityError(f"model file {rel} is missing from {path}")
        got = sha256_file(file)[0]
        if got != want:
            raise errors.IntegrityError(
                f"model file {rel} has SHA-256 {got}, the manifest says {want}: the model "
                "was tampered with or corrupted; refusing to load it")
    return manifest, digest


def load_model_dir(path: str | Path, expected_digest: str | None = None) -> LoadedModel:
    """Verify and load a model folder."""
    folder = Path(path)
    manifest, digest = verify_dir(folder, expected_digest)
    flavor = get_flavor(manifest.flavor)
    native = flavor.load(folder, manifest.flavor_options)
    return LoadedModel(manifest, native, digest, folder)
