"""Settings: one object read from ``SHIPYARD_*`` environment variables and ``shipyard.yaml``.

Precedence, highest first: explicit keyword arguments, environment variables, the YAML file
(``SHIPYARD_CONFIG`` or ``./shipyard.yaml``), defaults. Every field is documented in
``docs/settings.md`` (a test keeps the two in step).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from shipyard.errors import InvalidInput

__all__ = ["Settings", "get_settings", "reset_settings"]


def _default_home() -> Path:
    local = Path.cwd() / ".shipyard"
    if local.is_dir():
        return local
    return Path.home() / ".shipyard"


class _YamlSource(PydanticBaseSettingsSource):
    """Reads ``shipyard.yaml``: keys are the field names (``db``, ``artifacts``, …)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data().get(field_name), field_name, False

    def _data(self) -> dict[str, Any]:
        if not hasattr(self, "_cache"):
            named = os.environ.get("SHIPYARD_CONFIG")
            path = Path(named or "shipyard.yaml")
            if named and not path.is_file():  # a typo must not silently mean "defaults"
                raise InvalidInput(f"SHIPYARD_CONFIG names {str(path)!r}, which is not a file")
            data: dict[str, Any] = {}
            if path.is_file():
                import yaml

                try:
                    loaded = yaml.safe_load(path.read_text()) or {}
                except yaml.YAMLError as exc:
                    raise InvalidInput(f"{path}: not valid YAML: {exc}") from exc
                if not isinstance(loaded, dict):
                    raise InvalidInput(f"{path}: expected a mapping of settings at the top level")
                data = {str(k).lower(): v for k, v in loaded.items()}
            self._cache = data
        return self._cache

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._data().items() if k in self.settings_cls.model_fields}


class Settings(BaseSettings):
    """Every Shipyard setting. Environment variables are ``SHIPYARD_`` + the field name."""

    model_config = SettingsConfigDict(env_prefix="SHIPYARD_", extra="ignore")

    home: Path = Field(
        default_factory=_default_home,
        description="Folder for the embedded database, artifacts and feature data. "
        "Default: ./.shipyard if it exists, else ~/.shipyard.",
    )
    db: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the metadata database: sqlite:///path or "
        "postgresql+psycopg://user@host/db. Default: sqlite:///<home>/shipyard.db.",
    )
    artifacts: str | None = Field(
        default=None,
        description="Root of the content-addressed artifact store: a local folder or "
        "s3://bucket/prefix. Default: <home>/artifacts.",
    )
    sync_logging: bool = Field(
        default=False,
        description="When true every log_metric/log_param/set_tag call is committed to the "
        "database before it returns; when false (default) calls are buffered and written in "
        "batches by a background thread.",
    )
    flush_interval: float = Field(
        default=0.5,
        gt=0,
        description="Seconds between background flushes of buffered tracking data; the most "
        "a SIGKILL can lose.",
    )
    buffer_size: int = Field(
        default=10_000,
        ge=1,
        description="Buffered tracking records at which a flush starts at once; callers wait "
        "(back-pressure) once twice this many are pending.",
    )
    uri: str | None = Field(
        default=None,
        description="URL of a Shipyard server (http://host:5000). When set, the SDK and CLI "
        "talk to that server instead of opening the database and artifact store themselves.",
    )
    token: str | None = Field(
        default=None,
        description="API token sent as 'Authorization: Bearer' to the server named by uri.",
    )
    online_store: str | None = Field(
        default=None,
        description="URL of the feature store's online store: sqlite:///path or "
        "redis://host:port/db. Default: sqlite:///<home>/online.db.",
    )
    feature_repo: Path | None = Field(
        default=None,
        description="Folder of the feature repository whose on-demand functions the feature "
        "store (and the server's /api/v1/features/online) runs.",
    )
    auth: bool = Field(
        default=False,
        description="Server only: require an API token (Authorization: Bearer) on every "
        "request and check the caller's role (viewer, editor, approver, admin).",
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        description="Endpoint of an S3-compatible service (MinIO, moto) for s3:// artifacts.",
    )
    user: str | None = Field(
        default=None,
        description="Name recorded as the actor of runs and audit events. Default: the OS user.",
    )
    system_metrics: bool = Field(
        default=False,
        description="Sample CPU and memory in the background for every run started.",
    )
    system_metrics_interval: float = Field(
        default=10.0,
        gt=0,
        description="Seconds between system-metric samples.",
    )
    require_services: bool = Field(
        default=False,
        description="Tests only: fail instead of skip when PostgreSQL, Redis or S3 is absent.",
    )

    @field_validator("home", mode="after")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlSource(settings_cls))

    @property
    def db_url(self) -> str:
        return self.db or f"sqlite:///{self.home / 'shipyard.db'}"

    @property
    def artifacts_uri(self) -> str:
        return self.artifacts or str(self.home / "artifacts")

    @property
    def actor(self) -> str:
        if self.user:
            return self.user
        try:
            import getpass

            return getpass.getuser()
        except Exception:  # no passwd entry in some containers
            return "unknown"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()


def reset_settings() -> None:
    """Forget the cached settings (tests, or after changing the environment)."""
    get_settings.cache_clear()
