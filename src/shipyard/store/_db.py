"""The metadata database: one engine per URL, SQLite tuning, transactions, migrations.

SQLite is opened in WAL mode with a busy timeout, and every write transaction starts with
``BEGIN IMMEDIATE`` so that several processes queue for the write lock instead of failing
with "database is locked" when a reader tries to upgrade. Reads use deferred transactions
and run concurrently with a writer.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError

from shipyard import errors

from . import _schema

__all__ = ["Database", "HEAD_REVISION"]

#: The newest Alembic revision shipped; a test checks it equals the migration scripts' head.
HEAD_REVISION = "0006_deployment_evidence"

_MIGRATIONS = Path(__file__).with_name("migrations")
_READONLY = "shipyard_readonly"


def _redacted(url: str) -> str:
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return url


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        sa_url = sa.engine.make_url(url)
        if sa_url.database and sa_url.database != ":memory:":
            folder = Path(sa_url.database).expanduser().parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise errors.ShipyardError(
                    f"cannot create the folder {str(folder)!r} of the SQLite database "
                    f"{url!r}: {exc.strerror or exc}") from exc
        engine = sa.create_engine(
            url, connect_args={"timeout": 60, "check_same_thread": False}, pool_size=8
        )
        _configure_sqlite(engine)
        return engine
    try:
        return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)
    except ModuleNotFoundError as exc:
        hint = ("pip install 'shipyard-mlops[postgres]' and use a postgresql+psycopg:// URL"
                if url.startswith("postgresql")
                else f"install the Python package that provides {exc.name!r}")
        raise errors.MissingDependency(
            f"the database URL {_redacted(url)!r} needs the driver {exc.name!r}: {hint}"
        ) from exc
    except sa.exc.ArgumentError as exc:
        raise errors.InvalidInput(f"invalid database URL {_redacted(url)!r}: {exc}",
                                  field="db") from exc


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, emit BEGIN so we can choose IMMEDIATE.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        readonly = conn.get_execution_options().get(_READONLY, False)
        # Straight to the driver: this runs for every transaction, so skip SQLAlchemy's
        # statement machinery (about a third of an empty write transaction's cost).
        conn.connection.driver_connection.execute(  # type: ignore[union-attr]
            "BEGIN" if readonly else "BEGIN IMMEDIATE")


class Database:
    """A metadata database at one URL, migrated to :data:`HEAD_REVISION` on first use."""

    _lock = threading.Lock()
    _engines: dict[str, Engine] = {}
    _migrated: set[str] = set()

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = self._engine_for(url)
        self.dialect = self.engine.dialect.name
        self.ensure_migrated()

    @classmethod
    def _engine_for(cls, url: str) -> Engine:
        with cls._lock:
            key = f"{os.getpid()}:{url}"
            engine = cls._engines.get(key)
            if engine is None:
                engine = cls._engines[key] = _make_engine(url)
            return engine

    @classmethod
    def dispose_all(cls) -> None:
        """Close every pooled connection (tests; after fork)."""
        with cls._lock:
            for engine in cls._engines.values():
                engine.dispose()
            cls._engines.clear()
            cls._migrated.clear()

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction: committed on success, rolled back on any exception."""
        with self._translate(), self.engine.begin() as conn:
            yield conn

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction (deferred on SQLite, so it never waits for the write lock)."""
        with self._translate(), self.engine.connect() as conn:
            conn = conn.execution_options(**{_READONLY: True})
            with conn.begin():
                yield conn

    @contextlib.contextmanager
    def _translate(self) -> Iterator[None]:
        try:
            yield
        except sa.exc.IntegrityError as exc:
            raise errors.Conflict(f"database constraint violated: {exc.orig}") from exc
        except sa.exc.DataError as exc:  # a value the column cannot hold (too long, too big)
            raise errors.InvalidInput(f"value rejected by the database: {exc.orig}") from exc
        except OverflowError as exc:  # sqlite3: an integer beyond 64 bits
            raise errors.InvalidInput(f"a number is out of range for the database: {exc}"
                                      ) from exc
        except OperationalError as exc:
            raise errors.ShipyardError(f"database error on {self._safe_url()}: {exc.orig}") from exc

    def _safe_url(self) -> str:
        return sa.engine.make_url(self.url).render_as_string(hide_password=True)

    # -- migrations -------------------------------------------------------------------------

    def current_revision(self) -> str | None:
        insp = sa.inspect(self.engine)
        if not insp.has_table("alembic_version"):
            return None
        with self.engine.connect() as conn:
            conn = conn.execution_options(**{_READONLY: True})
            return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()

    def ensure_migrated(self) -> None:
        """Bring the schema to head once per process; cheap when it is already there.

        The check reads ``alembic_version`` directly so that the common case never imports
        Alembic. Upgrades hold a lock (a file lock on SQLite, an advisory lock on PostgreSQL)
        so that many processes starting at once migrate exactly once.
        """
        if self.url in self._migrated:
            return
        try:
            current = self.current_revision()
        except OperationalError as exc:
            raise errors.ShipyardError(
                f"cannot open the metadata database {self._safe_url()}: {exc.orig}"
            ) from exc
        if current != HEAD_REVISION:
            with self._migration_lock():
                if self.current_revision() != HEAD_REVISION:
                    self.upgrade()
        self._migrated.add(self.url)

    def upgrade(self, revision: str = "head") -> None:
        """Run the Alembic migrations up to ``revision``."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(_MIGRATIONS))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)

    @contextlib.contextmanager
    def _migration_lock(self) -> Iterator[None]:
        if self.dialect == "sqlite":
            import fcntl

            db_path = self.engine.url.database
            if not db_path or db_path == ":memory:":
                yield
                return
            with open(f"{db_path}.migrate.lock", "w") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(fh, fcntl.LOCK_UN)
        elif self.dialect == "postgresql":
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT pg_advisory_lock(728154)")
                try:
                    yield
                finally:
                    conn.exec_driver_sql("SELECT pg_advisory_unlock(728154)")
                    conn.commit()
        else:
            yield

    @staticmethod
    def metadata() -> sa.MetaData:
        return _schema.metadata
