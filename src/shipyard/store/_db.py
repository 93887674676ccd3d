"""The metadata database: one engine per URL, SQLite tuning, transactions, migrations.

SQLite is opened in WAL mode with a busy timeout, and every write transaction starts with
``BEGIN IMMEDIATE`` so that several processes queue for the write lock instead of failing
with "database is locked" when a reader tries to upgrade. Reads use deferred transactions
and run concurrently with a writer.

SQLite takes one writer at a time, so a process writes to a SQLite file through one
connection that stays checked out of the pool (:class:`_SerialWriter`): its threads queue on
a lock instead of polling SQLite's busy handler, and a write transaction skips the pool
checkout, check-in and connection set-up (about two thirds of an empty transaction's cost).
PostgreSQL takes concurrent writers, so each of its transactions checks a connection out.
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
#: How long a write waits for another thread of this process to finish its write
#: transaction: SQLite's own busy timeout (``PRAGMA busy_timeout`` below), in seconds.
_WRITE_WAIT_S = 60.0
#: WAL pages between automatic checkpoints (``PRAGMA wal_autocheckpoint``; SQLite: 1,000)
WAL_CHECKPOINT_PAGES = 10_000


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
        # Checkpoint every ~40 MB of WAL rather than SQLite's ~4 MB: a page that many
        # commits rewrite (an index's last leaf) is copied to the database once per
        # checkpoint, and each checkpoint's fsyncs are paid by the commit that triggers it
        # (creating a run: ~0.5 ms instead of ~0.7 once the database has a few thousand).
        # The file is cut back to 64 MB after a checkpoint if it grew past that.
        cur.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
        cur.execute(f"PRAGMA journal_size_limit={64 * 1024 * 1024}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        readonly = conn.get_execution_options().get(_READONLY, False)
        # Straight to the driver: this runs for every transaction, so skip SQLAlchemy's
        # statement machinery (about a third of an empty write transaction's cost).
        conn.connection.driver_connection.execute(  # type: ignore[union-attr]
            "BEGIN" if readonly else "BEGIN IMMEDIATE")


class _SerialWriter:
    """The write connection of one SQLite file in this process, shared by its threads.

    Kept checked out of the engine's pool and opened on first use; one write transaction at
    a time holds it, so transactions are exactly what ``engine.begin()`` would give
    (``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on error). Bound to the process that made
    it: a child process after ``fork`` gets its own (see :meth:`Database.write`).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.pid = os.getpid()
        self._lock = threading.Lock()
        self._owner: int | None = None
        self._conn: Connection | None = None
        self.retired = False  # closed by Database.dispose_all: writes look up a new one

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        me = threading.get_ident()
        if self._owner == me:
            # On SQLite a second write transaction inside the first can only wait for it:
            # with a connection per transaction it failed after the busy timeout.
            raise errors.ShipyardError("a write transaction was started inside another one "
                                       "on the same SQLite database (this thread holds it)")
        if not self._lock.acquire(timeout=_WRITE_WAIT_S):
            raise errors.ShipyardError(
                f"database is locked: another thread of this process kept a write transaction "
                f"open for {_WRITE_WAIT_S:.0f} s")
        self._owner = me
        try:
            conn = self._conn
            if conn is None or conn.closed or conn.invalidated:
                conn = self._conn = self.engine.connect()
            try:
                with conn.begin():
                    yield conn
            except BaseException:
                if conn.invalidated or conn.in_transaction():
                    # Not cleanly rolled back: start the next transaction on a fresh one.
                    self._conn = None
                    with contextlib.suppress(Exception):
                        conn.close()
                raise
        finally:
            self._owner = None
            self._lock.release()

    def close(self) -> None:
        """Give the connection back to the pool, after a transaction in progress; later
        writes through a :class:`Database` that held this writer take a new one."""
        self.retired = True
        if not self._lock.acquire(timeout=_WRITE_WAIT_S):
            return  # still in use: the pool's garbage collection closes it later
        try:
            conn, self._conn = self._conn, None
        finally:
            self._lock.release()
        if conn is not None:
            conn.close()


def _serial_writes(url: str) -> bool:
    """True for a SQLite file: one connection per database (``:memory:`` has one per thread
    in SQLAlchemy's pool, so it keeps a connection per transaction)."""
    if not url.startswith("sqlite"):
        return False
    database = sa.engine.make_url(url).database or ""
    return database not in ("", ":memory:") and not database.startswith("file:")


class Database:
    """A metadata database at one URL, migrated to :data:`HEAD_REVISION` on first use."""

    _lock = threading.Lock()
    _engines: dict[str, Engine] = {}
    _writers: dict[str, _SerialWriter] = {}
    _migrated: set[str] = set()

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = self._engine_for(url)
        self.dialect = self.engine.dialect.name
        self._serial = _serial_writes(url)
        self._writer: _SerialWriter | None = None
        self.ensure_migrated()

    @classmethod
    def _engine_for(cls, url: str) -> Engine:
        with cls._lock:
            key = f"{os.getpid()}:{url}"
            engine = cls._engines.get(key)
            if engine is None:
                engine = cls._engines[key] = _make_engine(url)
            return engine

    def _writer_for(self) -> _SerialWriter:
        cls = type(self)
        with cls._lock:
            key = f"{os.getpid()}:{self.url}"
            engine = cls._engines.get(key)
            if engine is None:
                engine = cls._engines[key] = _make_engine(self.url)
            writer = cls._writers.get(key)
            if writer is None or writer.engine is not engine:
                writer = cls._writers[key] = _SerialWriter(engine)
        self.engine = engine
        return writer

    @classmethod
    def dispose_all(cls) -> None:
        """Close every pooled connection (tests; after fork)."""
        with cls._lock:
            writers = [w for w in cls._writers.values() if w.pid == os.getpid()]
            cls._writers.clear()
        for writer in writers:  # outside the class lock: close() waits for a transaction
            writer.close()
        with cls._lock:
            for engine in cls._engines.values():
                engine.dispose()
            cls._engines.clear()
            cls._migrated.clear()

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction: committed on success, rolled back on any exception."""
        if not self._serial:
            with self._translate(), self.engine.begin() as conn:
                yield conn
            return
        writer = self._writer
        if writer is None or writer.retired or writer.pid != os.getpid():
            # First write, the first since dispose_all, or the first in a child process
            # after fork: never share the parent's SQLite connection.
            writer = self._writer = self._writer_for()
        with self._translate(), writer.transaction() as conn:
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
