"""Named images: the registry's pure parts (names, entries, where they live in the backend, who uses one).

The registry lives in the Pulumi backend beside the stacks (`components.image_store` reads and writes it),
so a team sharing a backend shares its images: one JSON entry per name under `NAMES_PREFIX`, the bytes once
per content under `BLOBS_PREFIX<sha256>`. `launch.image` names one when its value has no `/` (a path to a
boot file always has one: a bare file name would be in the project directory, which no `qemu.imageDirs`
may hold).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

PREFIX = ".cloudrepo/images/"
NAMES_PREFIX = f"{PREFIX}names/"
BLOBS_PREFIX = f"{PREFIX}blobs/"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
NAME_RULE = "1..64 letters, digits, '.', '_' or '-', starting with a letter or digit"
SHA256_RE = re.compile(r"[0-9a-f]{64}")
FORMATS = ("qcow2", "raw")
QCOW2_MAGIC = b"QFI\xfb"


def is_name(value: str) -> bool:
    """`launch.image` names a registry image (not a path) when it has no `/`."""
    return "/" not in value


def name_problem(name: Any) -> str | None:
    """Why `name` is no image name, or None."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        return f"an image name is {NAME_RULE}, got {name!r}"
    return None


def detect_format(head: bytes) -> Literal["qcow2", "raw"]:
    """The disk format from the file's first bytes (what QEMU is told with `format=`)."""
    return "qcow2" if head[:4] == QCOW2_MAGIC else "raw"


@dataclass(frozen=True)
class ImageEntry:
    """One named image of the registry."""

    name: str
    sha256: str
    size: int
    format: Literal["qcow2", "raw"]
    description: str = ""
    added: str = ""
    """When (ISO 8601, UTC)."""
    added_by: str = ""
    """Who (`user@host`)."""

    @property
    def name_key(self) -> str:
        return name_key(self.name)

    @property
    def blob_key(self) -> str:
        return blob_key(self.sha256)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def name_key(name: str) -> str:
    return f"{NAMES_PREFIX}{name}.json"


def blob_key(sha256: str) -> str:
    return f"{BLOBS_PREFIX}{sha256}"


def entry_from_json(text: str | bytes) -> ImageEntry:
    """An entry as `to_json` wrote it; ValueError when it is not one."""
    try:
        raw = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not an image entry: {exc}") from exc
    if not isinstance(raw, dict):
        raise ValueError("not an image entry: not an object")
    name, sha, size, fmt = raw.get("name"), raw.get("sha256"), raw.get("size"), raw.get("format")
    if name_problem(name) is not None:
        raise ValueError(f"not an image entry: bad name {name!r}")
    if not isinstance(sha, str) or not SHA256_RE.fullmatch(sha):
        raise ValueError(f"not an image entry: bad sha256 {sha!r}")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ValueError(f"not an image entry: bad size {size!r}")
    if fmt not in FORMATS:
        raise ValueError(f"not an image entry: bad format {fmt!r}")
    texts = {k: raw.get(k, "") for k in ("description", "added", "added_by")}
    if not all(isinstance(v, str) for v in texts.values()):
        raise ValueError("not an image entry: description, added and added_by must be text")
    return ImageEntry(name=str(name), sha256=sha, size=size, format=fmt, **texts)


def description_problem(text: str) -> str | None:
    if len(text) > 1024 or not text.isprintable():
        return f"a description is printable text of at most 1024 characters, got {text[:80]!r}"
    return None


def add_problem(existing: ImageEntry | None, name: str, sha256: str) -> str | None:
    """Why adding `name` with content `sha256` is refused, or None (a new name, or the same content again)."""
    if existing is None or existing.sha256 == sha256:
        return None
    return (
        f"image {name!r} exists with other content (sha256 {existing.sha256[:12]}..., this file "
        f"{sha256[:12]}...); to replace it: cloudrepo image rm {name}, then image add"
    )


def images_in_outputs(outputs: Mapping[str, Any]) -> dict[int, str]:
    """VM id -> the registry name its launch boots from, as a slice's outputs record it (`vms.N.image`)."""
    vms = outputs.get("vms")
    out: dict[int, str] = {}
    for vm, body in vms.items() if isinstance(vms, Mapping) else ():
        image = body.get("image") if isinstance(body, Mapping) else None
        name = image.get("name") if isinstance(image, Mapping) else None
        if isinstance(name, str) and str(vm).isdigit():
            out[int(vm)] = name
    return out


def users(name: str, stacks: Iterable[tuple[str, Mapping[str, Any]]]) -> list[str]:
    """The deployed slices (`stack (vm 1002, 1003)`) whose outputs boot a VM from image `name`."""
    found = []
    for stack, outputs in stacks:
        vms = sorted(vm for vm, used in images_in_outputs(outputs).items() if used == name)
        if vms:
            found.append(f"{stack} (vm {', '.join(map(str, vms))})")
    return found


def rm_problem(name: str, users_of: list[str]) -> str | None:
    if not users_of:
        return None
    return (
        f"image {name!r} is used by deployed slice(s): {'; '.join(users_of)}; destroy them or change "
        "their launch.image first"
    )
