"""Content-addressed objects over fsspec: ``<root>/objects/ab/cdef…`` keyed by SHA-256.

An object is written in full (to a temporary name, then renamed, on a local disk) before
any metadata may point at it, so a crash leaves at most an orphan object. Reads verify the
digest, so a tampered or truncated object is refused instead of being returned.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from shipyard import errors

__all__ = ["ArtifactStore", "sha256_file", "sha256_bytes"]

_CHUNK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> tuple[str, int]:
    """SHA-256 hex digest and size of a local file, read in chunks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


class ArtifactStore:
    """Content-addressed object store at ``root`` (a local folder or an ``s3://`` URI)."""

    def __init__(self, root: str, *, s3_endpoint_url: str | None = None) -> None:
        self.root = root.rstrip("/")
        self.is_local = "://" not in self.root or self.root.startswith("file://")
        if self.is_local:
            self.root = str(Path(self.root.removeprefix("file://")).expanduser().resolve())
        self._endpoint = s3_endpoint_url
        self._fs: Any = None

    # -- filesystem --------------------------------------------------------------------------

    @property
    def fs(self) -> Any:
        if self._fs is None:
            self._fs = self._open_fs()
        return self._fs

    def _open_fs(self) -> Any:
        import fsspec

        if self.is_local:
            return fsspec.filesystem("file")
        protocol = self.root.split("://", 1)[0]
        options: dict[str, Any] = {}
        if protocol in ("s3", "s3a"):
            try:
                import s3fs  # noqa: F401
            except ModuleNotFoundError as exc:
                raise errors.MissingDependency(
                    "s3:// artifact stores need s3fs: pip install 'shipyard-mlops[s3]'"
                ) from exc
            if self._endpoint:
                options["client_kwargs"] = {"endpoint_url": self._endpoint}
            options["skip_instance_cache"] = True
        try:
            return fsspec.filesystem(protocol, **options)
        except (ValueError, ImportError) as exc:
            raise errors.InvalidInput(
                f"unsupported artifact store URI {self.root!r}: {exc}", field="artifacts"
            ) from exc

    def object_path(self, digest: str) -> str:
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise errors.InvalidInput(f"not a SHA-256 hex digest: {digest!r}")
        return f"{self.root}/objects/{digest[:2]}/{digest[2:]}"

    # -- writing -----------------------------------------------------------------------------

    def put_file(self, path: str | os.PathLike[str]) -> tuple[str, int]:
        """Store a local file; returns (digest, size). Idempotent for identical content."""
        digest, size = sha256_file(path)
        target = self.object_path(digest)
        if not self.exists(digest):
            if self.is_local:
                self._atomic_local_copy(Path(path), Path(target))
            else:
                self.fs.put_file(str(path), target)
        return digest, size

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        """Store bytes; returns (digest, size)."""
        digest = sha256_bytes(data)
        target = self.object_path(digest)
        if not self.exists(digest):
            if self.is_local:
                self._atomic_local_write(Path(target), data)
            else:
                self.fs.pipe_file(target, data)
        return digest, len(data)

    @staticmethod
    def _atomic_local_write(target: Path, data: bytes) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @staticmethod
    def _atomic_local_copy(source: Path, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".tmp-{uuid.uuid4().hex}"
        try:
            with open(source, "rb") as src, open(tmp, "wb") as dst:
                while chunk := src.read(_CHUNK):
                    dst.write(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    # -- reading -----------------------------------------------------------------------------

    def exists(self, digest: str) -> bool:
        return bool(self.fs.exists(self.object_path(digest)))

    def get_bytes(self, digest: str) -> bytes:
        """The object's bytes, after checking they hash to ``digest``."""
        try:
            data: bytes = self.fs.cat_file(self.object_path(digest))
        except FileNotFoundError as exc:
            raise errors.NotFound(f"artifact object {digest} is missing from {self.root}") from exc
        actual = sha256_bytes(data)
        if actual != digest:
            raise errors.IntegrityError(
                f"artifact object {digest} is corrupt or was tampered with "
                f"(its content hashes to {actual})"
            )
        return data

    def get_file(self, digest: str, dest: str | os.PathLike[str]) -> Path:
        """Copy the object to ``dest`` (verified; a bad copy is removed and refused)."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256()
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
        try:
            with self._open(digest) as src, open(tmp, "wb") as dst:
                while chunk := src.read(_CHUNK):
                    h.update(chunk)
                    dst.write(chunk)
            if h.hexdigest() != digest:
                raise errors.IntegrityError(
                    f"artifact object {digest} is corrupt or was tampered with "
                    f"(its content hashes to {h.hexdigest()})"
                )
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return dest

    def _open(self, digest: str) -> IO[bytes]:
        try:
            return self.fs.open(self.object_path(digest), "rb")
        except FileNotFoundError as exc:
            raise errors.NotFound(f"artifact object {digest} is missing from {self.root}") from exc

    def iter_digests(self) -> Iterator[str]:
        """Every stored object's digest (for garbage collection and checks)."""
        base = f"{self.root}/objects"
        if not self.fs.exists(base):
            return
        for path in self.fs.find(base):
            parts = str(path).rstrip("/").split("/")
            if len(parts) >= 2 and not parts[-1].startswith("."):
                yield parts[-2] + parts[-1]
