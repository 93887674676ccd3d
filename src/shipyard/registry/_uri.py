"""Model URIs: ``runs:/<run>/<path>``, ``models:/<name>/<version>``, ``models:/<name>@<alias>``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from shipyard import errors

__all__ = ["ModelRef", "parse_model_uri", "check_model_name", "check_alias"]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,255}$")
_ALIAS_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,63}$")


@dataclass(frozen=True)
class ModelRef:
    kind: str  # "run" | "version" | "alias" | "latest"
    name: str | None = None
    version: int | None = None
    alias: str | None = None
    run_id: str | None = None
    path: str | None = None


def check_model_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise errors.InvalidInput(
            f"invalid model name {name!r}: use 1-256 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit", field="name")
    return name


def check_alias(alias: object) -> str:
    if not isinstance(alias, str) or not _ALIAS_RE.match(alias):
        raise errors.InvalidInput(
            f"invalid alias {alias!r}: use up to 64 letters, digits, '_' or '-', starting "
            "with a letter", field="alias")
    if alias.lower() == "latest":
        raise errors.InvalidInput("'latest' is reserved: models:/NAME/latest means the newest "
                                  "version", field="alias")
    return alias


def parse_model_uri(uri: str) -> ModelRef:
    """Parse a model URI, or raise InvalidInput saying which forms are accepted."""
    if not isinstance(uri, str):
        raise errors.InvalidInput("model URI must be a string", field="uri")
    if uri.startswith("runs:/"):
        rest = uri[len("runs:/"):].strip("/")
        run_id, _, path = rest.partition("/")
        if not re.fullmatch(r"[0-9a-f]{32}", run_id) or not path:
            raise errors.InvalidInput(f"invalid model URI {uri!r}: expected "
                                      "runs:/<run_id>/<artifact path>", field="uri")
        return ModelRef(kind="run", run_id=run_id, path=path)
    if uri.startswith("models:/"):
        rest = uri[len("models:/"):].strip("/")
        if "@" in rest:
            name, _, alias = rest.partition("@")
            return ModelRef(kind="alias", name=check_model_name(name), alias=check_alias(alias))
        name, _, version = rest.rpartition("/")
        if name and version == "latest":
            return ModelRef(kind="latest", name=check_model_name(name))
        if name and version.isdigit() and int(version) > 0:
            return ModelRef(kind="version", name=check_model_name(name), version=int(version))
    raise errors.InvalidInput(
        f"invalid model URI {uri!r}: use runs:/<run_id>/<path>, models:/<name>/<version>, "
        "models:/<name>/latest or models:/<name>@<alias>", field="uri")
