"""Where a VM's boot files may come from: regular files that, every symlink resolved, lie inside the
operator's `cloudrepo:qemu.imageDirs` (default: the project's `images/` and the testbed's guest, never the
whole project, whose SSH key, `.git` and state stay out of reach). Anything else (`~`, `..` or a symlink
out, `/proc`, a FIFO, a directory, a missing file) is a config problem naming the key and the path. Each
file is known by its sha256, which names its copy on the worker (`/var/lib/cloudrepo/images/<sha256>`).
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vocabulary.naming import IMAGES_DIR, NAMESPACE

DEFAULT_IMAGE_DIRS = ("images", ".lab/guest")
"""Where boot files may come from, relative to the project: `images/` and the testbed's guest
(`python -m lab image`)."""
IMAGE_DIRS_KEY = f"{NAMESPACE}:qemu.imageDirs"


@dataclass(frozen=True)
class ImageDirs:
    """The operator's `qemu.imageDirs`: as written (for messages) and resolved."""

    texts: tuple[str, ...]
    roots: tuple[Path, ...]

    def holds(self, real: Path) -> bool:
        return any(real.is_relative_to(root) for root in self.roots)


@dataclass(frozen=True)
class BootFile:
    """A file a VM boots from: where it is here, its content hash and its copy on the worker."""

    local: str
    sha256: str
    registry: str | None = None
    """The registry name it comes from (`components.images`): `local` is then the project's cache."""

    @property
    def remote(self) -> str:
        return f"{IMAGES_DIR}/{self.sha256}"


def parse_image_dirs(raw: Any, base: Path, add: Callable[[str], None]) -> ImageDirs | None:
    """`qemu.imageDirs` (relative paths from the project directory, `~` expanded: an operator key). A
    directory that holds the whole project is refused; one that does not exist holds nothing."""
    texts = list(DEFAULT_IMAGE_DIRS) if raw is None else raw
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        add(f"{IMAGE_DIRS_KEY}: must be a non-empty list of directory paths, got {raw!r}")
        return None
    project = Path(os.path.realpath(base))
    roots: list[Path] = []
    for i, text in enumerate(texts):
        where = f"{IMAGE_DIRS_KEY}[{i}]"
        if not text or not text.isprintable():
            add(f"{where}: not a usable directory path, got {text!r}")
            continue
        path = Path(os.path.expanduser(text))
        real = Path(os.path.realpath(path if path.is_absolute() else base / path))
        if project.is_relative_to(real):
            add(
                f"{where}: {text!r} holds the whole project directory {str(project)!r} (its SSH key, .git "
                "and state); name a directory of boot files, such as 'images'"
            )
            continue
        roots.append(real)
    return ImageDirs(tuple(texts), tuple(roots)) if len(roots) == len(texts) else None


def _read_regular(real: Path) -> str:
    """The sha256 of the regular file `real` (no symlink: resolved already); OSError otherwise, and
    ValueError when it is no regular file (a FIFO or a device is never opened)."""
    if not stat.S_ISREG(os.lstat(real).st_mode):
        raise ValueError("not a regular file")
    fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise ValueError("not a regular file")
        digest = hashlib.sha256()
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def locate(text: str, where: str, base: Path, dirs: ImageDirs, add: Callable[[str], None]) -> Path | None:
    """The real path of `text` (relative paths from the project directory) when it lies inside `dirs`
    once every symlink is resolved; else a problem and None."""
    if not text or not text.isprintable():
        add(f"{where}: not a usable file path, got {text!r}")
        return None
    allowed = ", ".join(repr(t) for t in dirs.texts)
    if text.startswith("~"):
        add(f"{where}: '~' is not expanded: give a path inside {IMAGE_DIRS_KEY} ({allowed}), got {text!r}")
        return None
    path = Path(text) if Path(text).is_absolute() else base / text
    real = Path(os.path.realpath(path))
    if not dirs.holds(real):
        shown = "" if str(real) == os.path.normpath(path) else f", which resolves to {str(real)!r}"
        add(f"{where}: {text!r} is outside {IMAGE_DIRS_KEY} ({allowed}){shown}")
        return None
    return real


def _opened(
    text: str, where: str, base: Path, add: Callable[[str], None], read: Callable[[Path], Any], real: Path
) -> Any:
    try:
        return read(real)
    except FileNotFoundError:
        path = Path(text) if Path(text).is_absolute() else base / text
        add(f"{where}: no such file {text!r} (looked at {str(path)!r})")
    except ValueError as exc:
        add(f"{where}: {text!r} is {exc}")
    except OSError as exc:
        add(f"{where}: cannot read {text!r}: {exc.strerror}")
    return None


def boot_file(
    text: str, where: str, base: Path, dirs: ImageDirs, add: Callable[[str], None]
) -> BootFile | None:
    """The file `text` (relative paths from the project directory) with its hash, or a problem: it must
    be a regular file inside `dirs` once every symlink is resolved."""
    real = locate(text, where, base, dirs, add)
    if real is None:
        return None
    digest = _opened(text, where, base, add, _read_regular, real)
    return None if digest is None else BootFile(local=str(real), sha256=digest)


def _read_small(limit: int) -> Callable[[Path], bytes]:
    def read(real: Path) -> bytes:
        if not stat.S_ISREG(os.lstat(real).st_mode):
            raise ValueError("not a regular file")
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise ValueError("not a regular file")
            data = fh.read(limit + 1)
        if len(data) > limit:
            raise ValueError(f"over {limit} bytes")
        return data

    return read


def config_file(
    text: str, where: str, base: Path, dirs: ImageDirs, add: Callable[[str], None], limit: int
) -> bytes | None:
    """The content of a small file the guest gets (`launch.cloudInit.userData`), under the rules of boot
    files (inside `dirs`, a regular file, symlinks resolved), at most `limit` bytes; else a problem (the
    content is never shown)."""
    real = locate(text, where, base, dirs, add)
    if real is None:
        return None
    data: bytes | None = _opened(text, where, base, add, _read_small(limit), real)
    return data
