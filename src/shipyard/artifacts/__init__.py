"""Content-addressed artifact storage (local folder or S3) with digest verification."""

from ._store import ArtifactStore, sha256_bytes, sha256_file

__all__ = ["ArtifactStore", "sha256_bytes", "sha256_file"]
