"""Settings: defaults, SHIPYARD_* variables, shipyard.yaml and their precedence."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from shipyard.config import Settings, get_settings, reset_settings
from shipyard.errors import InvalidInput


@pytest.fixture
def bare_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No SHIPYARD_* variable at all, and a home folder of our own (~ = tmp/user)."""
    import os

    for key in list(os.environ):
        if key.startswith("SHIPYARD_"):
            monkeypatch.delenv(key)
    user_home = tmp_path / "user"
    user_home.mkdir()
    monkeypatch.setenv("HOME", str(user_home))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def test_defaults(bare_env: Path) -> None:
    s = Settings()
    assert s.home == bare_env.parent / "user" / ".shipyard"
    assert s.db is None and s.db_url == f"sqlite:///{s.home / 'shipyard.db'}"
    assert s.artifacts is None and s.artifacts_uri == str(s.home / "artifacts")
    assert s.sync_logging is False
    assert s.flush_interval == 0.5
    assert s.buffer_size == 10_000
    assert s.system_metrics is False
    assert s.system_metrics_interval == 10.0
    assert s.s3_endpoint_url is None
    assert s.require_services is False


def test_local_dot_shipyard_wins_when_it_exists(bare_env: Path) -> None:
    (bare_env / ".shipyard").mkdir()
    assert Settings().home == bare_env / ".shipyard"


def test_environment_variables(bare_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"HOME": "~/sy", "DB": "postgresql+psycopg://u@h/db", "ARTIFACTS": "s3://b/p",
           "SYNC_LOGGING": "1", "FLUSH_INTERVAL": "0.25", "BUFFER_SIZE": "7",
           "S3_ENDPOINT_URL": "http://127.0.0.1:9000", "USER": "ann",
           "SYSTEM_METRICS": "true", "SYSTEM_METRICS_INTERVAL": "2"}
    for key, value in env.items():
        monkeypatch.setenv(f"SHIPYARD_{key}", value)
    s = Settings()
    assert s.home == bare_env.parent / "user" / "sy"  # ~ expanded
    assert (s.db_url, s.artifacts_uri) == ("postgresql+psycopg://u@h/db", "s3://b/p")
    assert (s.sync_logging, s.flush_interval, s.buffer_size) == (True, 0.25, 7)
    assert (s.s3_endpoint_url, s.actor) == ("http://127.0.0.1:9000", "ann")
    assert (s.system_metrics, s.system_metrics_interval) == (True, 2.0)


def test_relative_home_is_resolved(bare_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPYARD_HOME", "rel/home")
    assert Settings().home == bare_env / "rel" / "home"


def test_yaml_in_the_working_folder(bare_env: Path) -> None:
    (bare_env / "shipyard.yaml").write_text(
        "db: sqlite:////data/sy.db\nSYNC_LOGGING: true\nflush_interval: 2\nunknown_key: 1\n")
    s = Settings()
    assert s.db == "sqlite:////data/sy.db"
    assert s.sync_logging is True  # keys are case-insensitive
    assert s.flush_interval == 2.0


def test_yaml_named_by_shipyard_config(bare_env: Path, monkeypatch: pytest.MonkeyPatch,
                                       tmp_path: Path) -> None:
    (bare_env / "shipyard.yaml").write_text("db: sqlite:////ignored.db\n")
    named = tmp_path / "elsewhere.yml"
    named.write_text("db: sqlite:////named.db\nbuffer_size: 5\n")
    monkeypatch.setenv("SHIPYARD_CONFIG", str(named))
    s = Settings()
    assert (s.db, s.buffer_size) == ("sqlite:////named.db", 5)


def test_precedence_kwargs_then_env_then_yaml_then_default(
        bare_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (bare_env / "shipyard.yaml").write_text(
        "db: sqlite:////yaml.db\nartifacts: /yaml-artifacts\nuser: yaml-user\n")
    monkeypatch.setenv("SHIPYARD_DB", "sqlite:////env.db")
    monkeypatch.setenv("SHIPYARD_ARTIFACTS", "/env-artifacts")
    s = Settings(db="sqlite:////kwarg.db")
    assert s.db == "sqlite:////kwarg.db"  # keyword beats environment
    assert s.artifacts == "/env-artifacts"  # environment beats YAML
    assert s.user == "yaml-user"  # YAML beats default
    assert s.flush_interval == 0.5  # default


def test_empty_yaml_is_no_settings(bare_env: Path) -> None:
    (bare_env / "shipyard.yaml").write_text("# nothing yet\n")
    assert Settings().db is None


@pytest.mark.parametrize(("text", "words"), [("- a\n- b\n", "mapping"),
                                            ("db: [unclosed\n", "shipyard.yaml")])
def test_bad_yaml_names_the_file(bare_env: Path, text: str, words: str) -> None:
    (bare_env / "shipyard.yaml").write_text(text)
    with pytest.raises(InvalidInput, match=words):
        Settings()


def test_missing_file_named_by_shipyard_config(bare_env: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPYARD_CONFIG", str(bare_env / "typo.yaml"))
    with pytest.raises(InvalidInput, match="typo.yaml"):
        Settings()


@pytest.mark.parametrize(("var", "value"), [("FLUSH_INTERVAL", "0"), ("FLUSH_INTERVAL", "-1"),
                                            ("BUFFER_SIZE", "0"), ("BUFFER_SIZE", "many"),
                                            ("SYNC_LOGGING", "perhaps"),
                                            ("SYSTEM_METRICS_INTERVAL", "0")])
def test_invalid_values_are_refused(bare_env: Path, monkeypatch: pytest.MonkeyPatch, var: str,
                                    value: str) -> None:
    monkeypatch.setenv(f"SHIPYARD_{var}", value)
    with pytest.raises(ValidationError) as info:
        Settings()
    assert info.value.errors()[0]["loc"] == (var.lower(),)


def test_invalid_yaml_value_is_refused(bare_env: Path) -> None:
    (bare_env / "shipyard.yaml").write_text("buffer_size: -3\n")
    with pytest.raises(ValidationError):
        Settings()


def test_actor_defaults_to_the_os_user(bare_env: Path) -> None:
    import getpass

    assert Settings().actor == getpass.getuser()
    assert Settings(user="bob").actor == "bob"


def test_get_settings_is_cached_until_reset(bare_env: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    reset_settings()
    first = get_settings()
    monkeypatch.setenv("SHIPYARD_BUFFER_SIZE", "3")
    assert get_settings() is first
    assert first.buffer_size == 10_000
    reset_settings()
    assert get_settings().buffer_size == 3


@pytest.mark.parametrize(("value", "outcome"), [(None, "skip"), ("", "skip"), ("0", "skip"),
                                                ("1", "fail"), ("true", "fail")])
def test_require_services_turns_a_skip_into_a_failure(
        monkeypatch: pytest.MonkeyPatch, value: str | None, outcome: str) -> None:
    from tests.conftest import service_unavailable

    if value is None:
        monkeypatch.delenv("SHIPYARD_REQUIRE_SERVICES", raising=False)
    else:
        monkeypatch.setenv("SHIPYARD_REQUIRE_SERVICES", value)
    expected = pytest.skip.Exception if outcome == "skip" else pytest.fail.Exception
    with pytest.raises(expected, match="PostgreSQL not reachable"):
        service_unavailable("PostgreSQL not reachable at nowhere")
