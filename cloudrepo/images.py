"""`cloudrepo image add|list|rm`: the named images of the backend (`components.images`, stored by
`components.image_store`), shared by everyone who uses that backend."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import shutil
import socket
import stat
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from cloudrepo.engine import SliceError
from components.image_store import Registry, file_sha256
from components.images import (
    FORMATS,
    ImageEntry,
    add_problem,
    description_problem,
    detect_format,
    name_problem,
    rm_problem,
    users,
)

KERNEL_FILES = (Path("/proc"), Path("/sys"), Path("/dev"))
"""Where files are the kernel's, not disks: never read into a registry others share."""


def image_name(text: str) -> str:
    """argparse type: an image name (`components.images.NAME_RULE`)."""
    why = name_problem(text)
    if why is not None:
        raise argparse.ArgumentTypeError(why)
    return text


def description(text: str) -> str:
    why = description_problem(text)
    if why is not None:
        raise argparse.ArgumentTypeError(why)
    return text


def disk_format(path: Path) -> Literal["qcow2", "raw"]:
    """What `qemu-img info` says the file is (its first bytes when qemu-img is not installed); only the
    formats a launched VM takes."""
    qemu_img = shutil.which("qemu-img")
    if qemu_img is None:
        with path.open("rb") as fh:
            return detect_format(fh.read(4))
    done = subprocess.run(
        [qemu_img, "info", "--output=json", "--", str(path)], capture_output=True, text=True, check=False
    )
    try:
        fmt = json.loads(done.stdout).get("format") if done.returncode == 0 else None
    except ValueError:
        fmt = None
    if fmt not in FORMATS:
        why = done.stderr.strip() if done.returncode else f"format {fmt!r}"
        raise SliceError(f"{str(path)!r} is not a qcow2 or raw disk image ({why})")
    return fmt


def add(registry: Registry, name: str, path: Path, text: str = "", by: str | None = None) -> ImageEntry:
    """Hash the regular file `path`, then keep its bytes and the entry in the registry; a name that holds
    other content is refused (the same content again is no change). `by`: who adds it (default
    `user@host` of this process)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise SliceError(f"cannot read {str(path)!r}: {exc.strerror}") from None
    real = Path(os.path.realpath(path))
    if not stat.S_ISREG(st.st_mode) or any(real.is_relative_to(d) for d in KERNEL_FILES):
        raise SliceError(f"{str(path)!r} is not a regular file (a disk image)")
    sha = file_sha256(path)
    existing = registry.lookup(name)
    why = add_problem(existing, name, sha)
    if why is not None:
        raise SliceError(why)
    if existing is not None:
        return existing
    entry = ImageEntry(
        name=name,
        sha256=sha,
        size=st.st_size,
        format=disk_format(path),
        description=text,
        added=datetime.now(UTC).isoformat(timespec="seconds"),
        added_by=by or f"{getpass.getuser()}@{socket.gethostname()}",
    )
    registry.add(entry, path)
    return entry


def remove(registry: Registry, name: str, stacks: Iterable[tuple[str, Mapping[str, Any]]]) -> ImageEntry:
    """Remove image `name` unless a deployed slice boots from it (refused, naming them)."""
    entry = registry.lookup(name)
    if entry is None:
        raise SliceError(f"no image named {name!r} (cloudrepo image list shows them)")
    why = rm_problem(name, users(name, stacks))
    if why is not None:
        raise SliceError(why)
    registry.remove(entry)
    return entry


def size_text(size: int) -> str:
    """Bytes as people read them: `512 B`, `16.0 MiB`."""
    units = ("B", "KiB", "MiB", "GiB")
    power = 0
    while power < len(units) - 1 and size >= 1024 ** (power + 1):
        power += 1
    return f"{size} B" if power == 0 else f"{size / 1024**power:.1f} {units[power]}"


def table(entries: list[ImageEntry]) -> str:
    if not entries:
        return "no images in this backend (cloudrepo image add NAME FILE)"
    rows = [("name", "format", "size", "sha256", "added", "by", "description")]
    rows += [
        (e.name, e.format, size_text(e.size), e.sha256[:12], e.added, e.added_by, e.description)
        for e in entries
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join([*(c.ljust(w) for c, w in zip(r, widths, strict=False)), r[-1]]).rstrip() for r in rows
    )


def as_json(entries: list[ImageEntry]) -> str:
    return json.dumps([asdict(e) for e in entries], indent=2)


def stacks_of(
    names: Callable[[], list[str]], outputs: Callable[[str], dict[str, Any]]
) -> Iterable[tuple[str, Mapping[str, Any]]]:
    """Every stack of the backend with its outputs (the deployed slices)."""
    for name in names():
        yield name, outputs(name)
