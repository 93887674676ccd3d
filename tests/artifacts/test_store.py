"""The content-addressed artifact store, on a local folder and on S3 (moto on loopback)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shipyard import errors
from shipyard.artifacts import ArtifactStore, sha256_bytes, sha256_file


def _overwrite_object(store: ArtifactStore, digest: str, data: bytes) -> None:
    """Tamper with a stored object behind the store's back."""
    path = store.object_path(digest)
    if store.is_local:
        Path(path).chmod(0o644)
        Path(path).write_bytes(data)
    else:
        store.fs.pipe_file(path, data)
        store.fs.invalidate_cache()


def test_bytes_round_trip(artifact_store: ArtifactStore) -> None:
    data = b"\x00hello artifacts\xff" * 1000
    digest, size = artifact_store.put_bytes(data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert size == len(data)
    assert artifact_store.exists(digest)
    assert artifact_store.get_bytes(digest) == data
    assert artifact_store.object_path(digest).endswith(f"/objects/{digest[:2]}/{digest[2:]}")


def test_empty_object_round_trips(artifact_store: ArtifactStore) -> None:
    digest, size = artifact_store.put_bytes(b"")
    assert (digest, size) == (sha256_bytes(b""), 0)
    assert artifact_store.get_bytes(digest) == b""


def test_file_round_trip(artifact_store: ArtifactStore, tmp_path: Path) -> None:
    source = tmp_path / "model.bin"
    source.write_bytes(bytes(range(256)) * 9000)  # > one read chunk
    digest, size = artifact_store.put_file(source)
    assert (digest, size) == sha256_file(source)
    copy = artifact_store.get_file(digest, tmp_path / "out" / "copy.bin")
    assert copy == tmp_path / "out" / "copy.bin"
    assert copy.read_bytes() == source.read_bytes()
    assert artifact_store.get_bytes(digest) == source.read_bytes()
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["copy.bin"]  # no temp left


def test_puts_are_idempotent(artifact_store: ArtifactStore, tmp_path: Path) -> None:
    source = tmp_path / "same.txt"
    source.write_bytes(b"same content")
    first = artifact_store.put_bytes(b"same content")
    assert artifact_store.put_bytes(b"same content") == first
    assert artifact_store.put_file(source) == first
    assert list(artifact_store.iter_digests()) == [first[0]]


def test_tampered_object_is_refused(artifact_store: ArtifactStore, tmp_path: Path) -> None:
    digest, _ = artifact_store.put_bytes(b"the real model")
    _overwrite_object(artifact_store, digest, b"the evil model")
    with pytest.raises(errors.IntegrityError, match=digest):
        artifact_store.get_bytes(digest)
    dest = tmp_path / "dl" / "model.bin"
    with pytest.raises(errors.IntegrityError):
        artifact_store.get_file(digest, dest)
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []  # the bad partial copy was removed


def test_truncated_object_is_refused(artifact_store: ArtifactStore) -> None:
    data = b"0123456789" * 100
    digest, _ = artifact_store.put_bytes(data)
    _overwrite_object(artifact_store, digest, data[:500])
    with pytest.raises(errors.IntegrityError):
        artifact_store.get_bytes(digest)


def test_missing_object_is_not_found(artifact_store: ArtifactStore, tmp_path: Path) -> None:
    digest = sha256_bytes(b"never stored")
    assert not artifact_store.exists(digest)
    with pytest.raises(errors.NotFound, match=digest):
        artifact_store.get_bytes(digest)
    with pytest.raises(errors.NotFound):
        artifact_store.get_file(digest, tmp_path / "x")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "bad",
    ["", "abc", "A" * 64, "g" * 64, "0" * 63, "0" * 65, "../" + "0" * 61, "0" * 62 + "/x"],
)
def test_bad_digest_is_invalid_input(artifact_store: ArtifactStore, bad: str) -> None:
    for call in (artifact_store.get_bytes, artifact_store.exists, artifact_store.object_path):
        with pytest.raises(errors.InvalidInput):
            call(bad)


def test_iter_digests_lists_every_object(artifact_store: ArtifactStore) -> None:
    assert list(artifact_store.iter_digests()) == []
    digests = {artifact_store.put_bytes(f"object {i}".encode())[0] for i in range(5)}
    assert set(artifact_store.iter_digests()) == digests


def test_local_write_leaves_no_temporary_files(local_artifacts: ArtifactStore,
                                               tmp_path: Path) -> None:
    source = tmp_path / "f.txt"
    source.write_text("file")
    local_artifacts.put_bytes(b"bytes")
    local_artifacts.put_file(source)
    files = [p for p in Path(local_artifacts.root).rglob("*") if p.is_file()]
    assert len(files) == 2
    assert not any(p.name.startswith(".tmp") for p in files)


def test_file_uri_is_a_local_store(tmp_path: Path) -> None:
    store = ArtifactStore(f"file://{tmp_path}/store/")
    assert store.is_local
    assert store.root == str(tmp_path / "store")
    digest, _ = store.put_bytes(b"x")
    assert (tmp_path / "store" / "objects" / digest[:2] / digest[2:]).read_bytes() == b"x"


def test_unknown_scheme_is_invalid_input() -> None:
    with pytest.raises(errors.InvalidInput, match="nosuchfs"):
        ArtifactStore("nosuchfs://bucket/prefix").put_bytes(b"x")


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2048))
def test_any_bytes_round_trip_locally(local_artifacts: ArtifactStore, data: bytes) -> None:
    digest, size = local_artifacts.put_bytes(data)
    assert size == len(data)
    assert local_artifacts.get_bytes(digest) == data
