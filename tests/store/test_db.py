"""The metadata database: migrations, schema, transactions and clear errors on bad URLs."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from shipyard import errors
from shipyard.store import HEAD_REVISION, Database, tables
from shipyard.store._db import _MIGRATIONS


def _schema_diff(db: Database) -> list[object]:
    with db.engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True})
        return list(compare_metadata(ctx, tables.metadata))


def test_migrations_build_exactly_the_schema(empty_backend_url: str) -> None:
    db = Database(empty_backend_url)
    assert db.current_revision() == HEAD_REVISION
    assert _schema_diff(db) == []
    names = set(sa.inspect(db.engine).get_table_names())
    assert names == {t.name for t in tables.metadata.sorted_tables} | {"alembic_version"}


def test_head_revision_is_the_scripts_head() -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    script = ScriptDirectory.from_config(cfg)
    assert script.get_heads() == [HEAD_REVISION]


def test_opening_again_is_a_no_op(backend_url: str) -> None:
    db = Database(backend_url)
    with db.write() as conn:
        conn.execute(tables.experiments.insert().values(
            name="kept", lifecycle_stage="active", creation_time=1, last_update_time=1))
    Database.dispose_all()  # forget "migrated" so the check runs again
    again = Database(backend_url)
    assert again.current_revision() == HEAD_REVISION
    with again.read() as conn:
        assert conn.execute(sa.select(tables.experiments.c.name)).scalars().all() == ["kept"]


_OPEN_CONCURRENTLY = textwrap.dedent("""
    import sys
    from shipyard.store import Database

    original = Database.upgrade

    def counting_upgrade(self, revision="head"):
        print("UPGRADED", flush=True)
        original(self, revision)

    Database.upgrade = counting_upgrade
    sys.stdin.readline()  # wait until every process is ready, then open at once
    Database(sys.argv[1])
    print("OPENED", flush=True)
""")


def test_concurrent_first_use_migrates_once(empty_backend_url: str, tmp_path: Path) -> None:
    procs = [
        subprocess.Popen([sys.executable, "-c", _OPEN_CONCURRENTLY, empty_backend_url],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
        for _ in range(4)
    ]
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = [proc.communicate(timeout=120) for proc in procs]
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
        assert "OPENED" in out
    assert sum(out.count("UPGRADED") for out, _ in results) == 1
    db = Database(empty_backend_url)
    with db.read() as conn:
        versions = conn.exec_driver_sql("SELECT version_num FROM alembic_version").all()
    assert [v[0] for v in versions] == [HEAD_REVISION]
    assert _schema_diff(db) == []


def test_write_commits_and_rolls_back(database: Database) -> None:
    E = tables.experiments
    row = {"lifecycle_stage": "active", "creation_time": 1, "last_update_time": 1}
    with database.write() as conn:
        conn.execute(E.insert().values(name="a", **row))
    with pytest.raises(RuntimeError), database.write() as conn:
        conn.execute(E.insert().values(name="b", **row))
        raise RuntimeError("boom")
    with database.read() as conn:
        assert conn.execute(sa.select(E.c.name)).scalars().all() == ["a"]


def test_constraint_violation_is_a_conflict_and_writes_nothing(database: Database) -> None:
    E = tables.experiments
    row = {"lifecycle_stage": "active", "creation_time": 1, "last_update_time": 1}
    with database.write() as conn:
        conn.execute(E.insert().values(name="a", **row))
    with pytest.raises(errors.Conflict), database.write() as conn:
        conn.execute(E.insert().values(name="b", **row))
        conn.execute(E.insert().values(name="a", **row))
    with database.read() as conn:
        assert conn.execute(sa.select(E.c.name)).scalars().all() == ["a"]


def test_foreign_keys_are_enforced(database: Database) -> None:
    with pytest.raises(errors.Conflict), database.write() as conn:
        conn.execute(tables.params.insert().values(run_id="0" * 32, key="k", value="v"))


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    with db.read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 10_000


def test_sqlite_reader_does_not_wait_for_a_writer(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    E = tables.experiments
    row = {"lifecycle_stage": "active", "creation_time": 1, "last_update_time": 1}
    with db.write() as writer:
        writer.execute(E.insert().values(name="uncommitted", **row))
        with db.read() as reader:  # would block (and time out) if reads took the write lock
            assert reader.execute(sa.select(sa.func.count()).select_from(E)).scalar() == 0
    with db.read() as reader:
        assert reader.execute(sa.select(sa.func.count()).select_from(E)).scalar() == 1


@pytest.mark.parametrize(
    ("url", "error", "words"),
    [
        ("nonsense", errors.InvalidInput, "invalid database URL"),
        ("", errors.InvalidInput, "invalid database URL"),
        ("nosuchdialect://x", errors.InvalidInput, "nosuchdialect"),
        ("postgresql+psycopg://u:secret@127.0.0.1:1/x", errors.ShipyardError,
         "cannot open the metadata database"),
    ],
)
def test_bad_url_gives_a_clear_error(url: str, error: type[errors.ShipyardError],
                                     words: str) -> None:
    with pytest.raises(error) as info:
        Database(url)
    assert words in info.value.message
    assert "secret" not in str(info.value)


def test_missing_driver_names_what_to_install() -> None:
    try:
        import MySQLdb  # type: ignore[import-not-found]  # noqa: F401
    except ModuleNotFoundError:
        pass
    else:  # pragma: no cover - only where the MySQL driver happens to be installed
        pytest.skip("MySQLdb is installed here")
    with pytest.raises(errors.MissingDependency) as info:
        Database("mysql+mysqldb://user:secret@127.0.0.1/db")
    assert "MySQLdb" in info.value.message
    assert "[postgres]" not in info.value.message  # the postgres extra would not help
    assert "secret" not in info.value.message


@pytest.mark.parametrize("where", ["/proc/no-such-dir/x.db", "/etc/passwd/x.db"])
def test_sqlite_path_that_cannot_exist_is_a_shipyard_error(where: str) -> None:
    with pytest.raises(errors.ShipyardError) as info:
        Database(f"sqlite:///{where}")
    assert where.rsplit("/", 1)[0] in info.value.message


def test_a_folder_is_not_a_database(tmp_path: Path) -> None:
    with pytest.raises(errors.ShipyardError, match="cannot open the metadata database"):
        Database(f"sqlite:///{tmp_path}")


@pytest.mark.postgres
def test_value_too_wide_for_its_column_is_invalid_input(postgres_url: str) -> None:
    db = Database(postgres_url)
    with pytest.raises(errors.InvalidInput, match="too long"), db.write() as conn:
        conn.execute(tables.experiments.insert().values(
            name="x" * 300, lifecycle_stage="active", creation_time=1, last_update_time=1))
    with db.read() as conn:
        assert conn.execute(sa.select(tables.experiments)).all() == []


# -- SQLite: one write connection per database and process ---------------------------------

def _names(db: Database) -> list[str]:
    with db.read() as conn:
        return sorted(conn.execute(sa.select(tables.experiments.c.name)).scalars())


def _add(conn: sa.Connection, name: str) -> None:
    conn.execute(tables.experiments.insert().values(
        name=name, lifecycle_stage="active", creation_time=1, last_update_time=1))


def test_sqlite_threads_share_one_write_connection(tmp_path: Path) -> None:
    import threading

    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    other = Database(db.url)  # a second object on the same file shares the connection
    seen: set[int] = set()
    failures: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(25):
                with (db if i % 2 else other).write() as conn:
                    seen.add(id(conn.connection.driver_connection))
                    _add(conn, f"t{t}-{i}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(seen) == 1
    assert _names(db) == sorted(f"t{t}-{i}" for t in range(6) for i in range(25))


def test_sqlite_nested_write_fails_at_once(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(errors.ShipyardError, match="inside another one"), db.write() as conn:
        _add(conn, "outer")
        with db.write() as inner:  # with a connection per transaction: a 60 s wait
            _add(inner, "inner")
    with db.write() as conn:  # the lock was released and the outer transaction rolled back
        _add(conn, "after")
    assert _names(db) == ["after"]


def test_sqlite_write_recovers_from_an_invalidated_connection(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(RuntimeError), db.write() as conn:
        _add(conn, "lost")
        conn.invalidate()
        raise RuntimeError("connection went away")
    with db.write() as conn:
        _add(conn, "kept")
    assert _names(db) == ["kept"]


def test_sqlite_write_after_dispose_all_uses_a_new_connection(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    with db.write() as conn:
        _add(conn, "before")
        first = conn.connection.driver_connection
    Database.dispose_all()
    with db.write() as conn:
        _add(conn, "after")
        assert conn.connection.driver_connection is not first
    assert _names(db) == ["after", "before"]


def test_sqlite_forked_child_writes_through_its_own_connection(tmp_path: Path) -> None:
    import multiprocessing

    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    with db.write() as conn:
        _add(conn, "parent")
    ctx = multiprocessing.get_context("fork")
    queue = ctx.SimpleQueue()

    def child() -> None:
        with db.write() as conn:
            _add(conn, "child")
        assert db._writer is not None
        queue.put(db._writer.pid)

    proc = ctx.Process(target=child)
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0
    child_pid = queue.get()
    assert child_pid == proc.pid
    with db.write() as conn:  # the parent's connection is still fine
        _add(conn, "parent again")
    assert _names(db) == ["child", "parent", "parent again"]


@pytest.mark.postgres
def test_postgres_writes_check_out_a_connection_each(postgres_url: str) -> None:
    db = Database(postgres_url)
    with db.write() as first, db.write() as second:  # concurrent writers are fine here
        assert first.connection.driver_connection is not second.connection.driver_connection
        _add(first, "one")
        _add(second, "two")
    assert _names(db) == ["one", "two"]
