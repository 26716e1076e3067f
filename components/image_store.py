"""The named-image registry in the Pulumi backend's own storage (the I/O of `components.images`).

Which storage: the backend the engine uses (`PULUMI_BACKEND_URL`, else the one `pulumi login` recorded in
`$PULUMI_HOME/credentials.json`). `file://DIR`: files under `DIR/.cloudrepo/images/`. `s3://BUCKET?endpoint=
...&region=...&s3ForcePathStyle=true`: objects under that prefix of the bucket, through boto3 with the
same credentials the engine uses (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`). The bytes
are kept once per content (`blobs/<sha256>`); a fetch into the project's cache (`.cloudrepo/.images/`) is
checked against the sha256 before it takes its name there.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Protocol
from urllib.parse import parse_qs, urlparse

from components.images import NAMES_PREFIX, ImageEntry, blob_key, entry_from_json, name_key

CHUNK = 1 << 20
CACHE_DIR = Path(".cloudrepo") / ".images"
"""Where a project keeps fetched image bytes, relative to the project directory (beside the slices'
`.cloudrepo/NAME/`: no slice name starts with a '.')."""


class StoreError(RuntimeError):
    """The registry's storage could not be used; the message says why."""


class Store(Protocol):
    def get(self, key: str) -> bytes | None: ...
    def put(self, key: str, data: bytes) -> None: ...
    def put_file(self, key: str, path: Path) -> None: ...
    def fetch(self, key: str, out: BinaryIO) -> bool: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...
    def keys(self, prefix: str) -> Iterator[str]: ...


class FileStore:
    """`file://ROOT`: keys are paths under ROOT, written by rename (never seen half-written)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / key

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def _write(self, key: str, write: Any) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as fh:
                write(fh)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put(self, key: str, data: bytes) -> None:
        self._write(key, lambda fh: fh.write(data))

    def put_file(self, key: str, path: Path) -> None:
        def copy(fh: BinaryIO) -> None:
            with path.open("rb") as src:
                for block in iter(lambda: src.read(CHUNK), b""):
                    fh.write(block)

        self._write(key, copy)

    def fetch(self, key: str, out: BinaryIO) -> bool:
        try:
            with self._path(key).open("rb") as src:
                for block in iter(lambda: src.read(CHUNK), b""):
                    out.write(block)
        except FileNotFoundError:
            return False
        return True

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def keys(self, prefix: str) -> Iterator[str]:
        base = self._path(prefix)
        if base.is_dir():
            for p in sorted(base.iterdir()):
                if p.is_file() and not p.name.startswith("."):
                    yield prefix + p.name


class S3Store:
    """`s3://BUCKET?endpoint=...`: objects of the bucket, through boto3."""

    def __init__(self, bucket: str, client: Any) -> None:
        self.bucket = bucket
        self.client = client

    @classmethod
    def from_url(cls, url: str) -> S3Store:
        import boto3  # only for s3:// backends
        from botocore.config import Config

        parsed = urlparse(url)
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        path_style = query.get("s3ForcePathStyle", "").lower() == "true"
        client = boto3.client(
            "s3",
            endpoint_url=query.get("endpoint"),
            region_name=query.get("region") or os.environ.get("AWS_REGION") or None,
            config=Config(s3={"addressing_style": "path" if path_style else "auto"}),
        )
        return cls(parsed.netloc, client)

    def _missing(self, exc: Exception) -> bool:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code")
        return code in ("NoSuchKey", "404", "NotFound")

    def get(self, key: str) -> bytes | None:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        except Exception as exc:
            if self._missing(exc):
                return None
            raise
        data: bytes = body.read()
        return data

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data)

    def put_file(self, key: str, path: Path) -> None:
        self.client.upload_file(str(path), self.bucket, key)

    def fetch(self, key: str, out: BinaryIO) -> bool:
        try:
            self.client.download_fileobj(self.bucket, key, out)
        except Exception as exc:
            if self._missing(exc):
                return False
            raise
        return True

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if self._missing(exc):
                return False
            raise
        return True

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def keys(self, prefix: str) -> Iterator[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        for page in pages:
            for obj in page.get("Contents", []):
                key = obj["Key"]
                if "/" not in key[len(prefix) :]:
                    yield key


def backend_url() -> str:
    """The backend the engine uses: `PULUMI_BACKEND_URL`, else the one `pulumi login` recorded."""
    url = os.environ.get("PULUMI_BACKEND_URL")
    if url:
        return url
    home = Path(os.environ.get("PULUMI_HOME") or Path.home() / ".pulumi")
    try:
        current = json.loads((home / "credentials.json").read_text()).get("current")
    except (OSError, ValueError, AttributeError):
        current = None
    if not isinstance(current, str) or not current:
        raise StoreError("no Pulumi backend: set PULUMI_BACKEND_URL or run pulumi login")
    return current


def open_store(url: str | None = None) -> Store:
    """The registry's storage in the backend `url` (default: `backend_url()`)."""
    url = url or backend_url()
    if url.startswith("file://"):
        return FileStore(Path(url.removeprefix("file://")).expanduser())
    if url.startswith("s3://"):
        return S3Store.from_url(url)
    scheme = url.split("://", 1)[0]
    raise StoreError(f"named images need a file:// or s3:// backend, not {scheme}://")


class Registry:
    """The named images of one backend."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def lookup(self, name: str) -> ImageEntry | None:
        data = self.store.get(name_key(name))
        return None if data is None else entry_from_json(data)

    def entries(self) -> list[ImageEntry]:
        out = []
        for key in self.store.keys(NAMES_PREFIX):
            data = self.store.get(key) if key.endswith(".json") else None
            if data is not None:
                try:
                    out.append(entry_from_json(data))
                except ValueError:
                    continue  # not ours: `image list` shows the registry's entries only
        return sorted(out, key=lambda e: e.name)

    def add(self, entry: ImageEntry, path: Path) -> None:
        """The bytes (once per content), then the name: a name is never seen without its bytes."""
        if not self.store.exists(entry.blob_key):
            self.store.put_file(entry.blob_key, path)
        self.store.put(entry.name_key, entry.to_json().encode())

    def remove(self, entry: ImageEntry) -> None:
        """The name, then the bytes when no other name holds the same content."""
        self.store.delete(entry.name_key)
        if all(e.sha256 != entry.sha256 for e in self.entries()):
            self.store.delete(entry.blob_key)

    def fetch(self, name: str, sha256: str, dest: Path) -> None:
        """The bytes of image `name` (content `sha256`) at `dest` (kept when already there), checked
        against the sha256 before they take that name."""
        if dest.is_file():
            return
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as fh:
                found = self.store.fetch(blob_key(sha256), fh)
            if not found:
                raise StoreError(f"image {name!r}: its bytes are missing from the backend")
            got = file_sha256(Path(tmp))
            if got != sha256:
                raise StoreError(f"image {name!r}: the backend's bytes have sha256 {got}, not {sha256}")
            os.chmod(tmp, 0o600)
            os.replace(tmp, dest)
        finally:
            Path(tmp).unlink(missing_ok=True)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def cached(base: Path, sha256: str) -> Path:
    """Where the project at `base` keeps the bytes of content `sha256`."""
    return base / CACHE_DIR / sha256
