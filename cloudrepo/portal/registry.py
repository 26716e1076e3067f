"""The admin's named images in the portal, through the verbs of `cloudrepo image add|list|rm`
(`cloudrepo.images`, the backend's registry): a file is added only from the directories the operator
allows boot files from (`qemu.imageDirs` of the portal's cloud, relative paths from the project, symlinks
resolved), never uploaded; a removal is refused while a deployed slice boots from the image."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cloudrepo import images
from cloudrepo.engine import SliceError
from cloudrepo.portal import audit
from cloudrepo.portal.db import User
from cloudrepo.portal.service import Cloud, Portal, Refused
from components.bootfiles import ImageDirs, locate, parse_image_dirs
from components.image_store import Registry
from components.images import ImageEntry, description_problem, name_problem
from vocabulary.naming import NAMESPACE

MAX_FILES = 500
"""The most files the add form offers (the directories may hold more: a path is typed then)."""
MAX_DEPTH = 3


def image_dirs(cloud: Cloud, project: Path) -> ImageDirs:
    """The directories the portal's cloud allows boot files from (its `qemu.imageDirs`, else the default)."""
    qemu = cloud.plain.get(f"{NAMESPACE}:qemu")
    raw = qemu.get("imageDirs") if isinstance(qemu, dict) else None
    problems: list[str] = []
    dirs = parse_image_dirs(raw, project, problems.append)
    if dirs is None:
        raise Refused(409, [f"the portal's cloud: {p}" for p in problems])
    return dirs


def files(dirs: ImageDirs) -> list[str]:
    """The regular files inside the allowed directories (each, symlinks resolved, still inside them), for
    the admin to choose from: at most `MAX_FILES`, `MAX_DEPTH` levels down, hidden ones left out."""
    found: list[str] = []
    for root in dirs.roots:
        for here, subdirs, names in os.walk(root):
            depth = len(Path(here).relative_to(root).parts)
            subdirs[:] = [] if depth + 1 >= MAX_DEPTH else sorted(d for d in subdirs if not d.startswith("."))
            for name in sorted(n for n in names if not n.startswith(".")):
                path = Path(here) / name
                real = Path(os.path.realpath(path))
                if dirs.holds(real) and real.is_file():
                    found.append(str(path))
                if len(found) >= MAX_FILES:
                    return found
    return found


@contextmanager
def opened(p: Portal) -> Iterator[Registry]:
    """The backend's registry; a failure of its storage (a file system or an S3 endpoint) is a 502."""
    try:
        yield p.registry()
    except (Refused, SliceError):
        raise
    except Exception as exc:
        raise Refused(502, f"the image registry: {exc}") from None


def entry_json(entry: ImageEntry) -> dict[str, Any]:
    return asdict(entry)


def listed(p: Portal) -> list[ImageEntry]:
    with opened(p) as registry:
        return registry.entries()


def _admin(user: User) -> None:
    if user.role != "admin":
        raise Refused(403, f"{user.name} is a {user.role}: images are the admin's")


def add(p: Portal, user: User, name: str, path: str, description: str = "") -> ImageEntry:
    """Keep the file `path` (inside the allowed directories) as image `name`; every problem of the request
    at once (422); a name that holds other content, or no regular file, is refused (409)."""
    _admin(user)
    checks = {"name": name_problem(name), "description": description_problem(description)}
    problems = [f"{key}: {why}" for key, why in checks.items() if why]
    real = locate(path, "path", p.project, image_dirs(p.cloud, p.project), problems.append)
    if problems or real is None:
        raise Refused(422, problems)
    with opened(p) as registry:
        entry = images.add(registry, name, real, description, by=f"{user.name} (portal)")
    with p.session() as db:
        detail = f"{name}: {entry.format}, {images.size_text(entry.size)}, sha256 {entry.sha256}, from {real}"
        audit.record(db, user.name, "image add", None, "ok", detail)
    return entry


def remove(p: Portal, user: User, name: str) -> ImageEntry:
    """Remove image `name`; refused (409, naming them) while a deployed slice boots from it."""
    _admin(user)
    with opened(p) as registry:
        if registry.lookup(name) is None:
            raise Refused(404, f"no image named {name!r}")
        entry = images.remove(registry, name, images.stacks_of(p.slices.names, p.slices.outputs))
    with p.session() as db:
        audit.record(db, user.name, "image rm", None, "ok", f"{name}: sha256 {entry.sha256}")
    return entry
