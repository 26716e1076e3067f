"""VM launch config: each VM's optional `launch` and the stack's `cloudrepo:qemu`, validated like the rest.

`load(raw, stack, base)` runs `components.config.load_config` and this module's checks and raises ONE
`ConfigError` with every problem of both. The files a VM boots from are read here (at `pulumi preview`):
a missing or unreadable file is a config problem naming it, and each file is known by its sha256, which
names its copy on the worker (`/var/lib/cloudrepo/images/<sha256>`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, StrictInt, StrictStr

from components.config import load_config
from components.inputs import _Input, validate_input
from components.model import NAMESPACE, SliceConfig
from providers.errors import ConfigError
from providers.qemu_vm import (
    ACCELS,
    BINARY_PATTERN,
    IMAGES_DIR,
    MAX_APPEND,
    MAX_CPUS,
    MAX_MEMORY_MB,
    MIN_MEMORY_MB,
)

DEFAULT_BINARY = "qemu-system-x86_64"
DEFAULT_ACCEL = "kvm"
BINARY_RE = re.compile(BINARY_PATTERN)
QCOW2_MAGIC = b"QFI\xfb"


class QemuInput(_Input):
    """`cloudrepo:qemu`: how QEMU runs on the workers."""

    binary: StrictStr = DEFAULT_BINARY
    accel: StrictStr = DEFAULT_ACCEL
    """`kvm` or `tcg` (a VM's `launch.accel` overrides it)."""


class LaunchInput(_Input):
    """`cloudrepo:slice.vms[].launch`: a disk `image`, or `kernel` (+ `initrd`, `append`)."""

    image: StrictStr | None = None
    kernel: StrictStr | None = None
    initrd: StrictStr | None = None
    append: StrictStr | None = None
    cpus: StrictInt = Field(default=1, ge=1, le=MAX_CPUS)
    memory_mb: StrictInt = Field(default=256, alias="memoryMb", ge=MIN_MEMORY_MB, le=MAX_MEMORY_MB)
    accel: StrictStr | None = None


@dataclass(frozen=True)
class BootFile:
    """A file a VM boots from: where it is here, its content hash and its copy on the worker."""

    local: str
    sha256: str

    @property
    def remote(self) -> str:
        return f"{IMAGES_DIR}/{self.sha256}"


@dataclass(frozen=True)
class Launch:
    """One launched VM, validated."""

    vm: int
    worker: str
    binary: str
    accel: Literal["kvm", "tcg"]
    cpus: int
    memory_mb: int
    image: BootFile | None = None
    image_format: Literal["qcow2", "raw"] | None = None
    kernel: BootFile | None = None
    initrd: BootFile | None = None
    append: str | None = None

    @property
    def files(self) -> tuple[BootFile, ...]:
        return tuple(f for f in (self.image, self.kernel, self.initrd) if f is not None)


def _accel(value: str | None, where: str, add: Callable[[str], None]) -> str | None:
    if value is not None and value not in ACCELS:
        add(f"{where}: must be one of {', '.join(ACCELS)}, got {value!r}")
        return None
    return value


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def boot_file(text: str, where: str, base: Path, add: Callable[[str], None]) -> BootFile | None:
    """The file `text` (relative paths from the project directory) with its hash, or a problem."""
    if not text or "\0" in text or "\n" in text:
        add(f"{where}: not a usable file path, got {text!r}")
        return None
    path = Path(os.path.expanduser(text))
    path = path if path.is_absolute() else base / path
    if not path.is_file():
        add(f"{where}: no such file {text!r} (looked at {str(path)!r})")
        return None
    try:
        return BootFile(local=str(path), sha256=_hash_file(path))
    except OSError as exc:
        add(f"{where}: cannot read {text!r}: {exc.strerror}")
        return None


def _image_format(path: str) -> Literal["qcow2", "raw"]:
    with open(path, "rb") as fh:
        return "qcow2" if fh.read(4) == QCOW2_MAGIC else "raw"


def parse_qemu(raw: Any, add: Callable[[str], None]) -> QemuInput | None:
    where = f"{NAMESPACE}:qemu"
    problems: list[str] = []
    q = validate_input(QemuInput, {} if raw is None else raw, where, problems)
    for p in problems:
        add(p)
    if q is None:
        return None
    ok = _accel(q.accel, f"{where}.accel", add) is not None
    if not BINARY_RE.fullmatch(q.binary):
        add(f"{where}.binary: must be a command name or absolute path without spaces, got {q.binary!r}")
        ok = False
    return q if ok else None


def parse_launch(
    raw: Any,
    vm: Mapping[str, Any],
    where: str,
    qemu: QemuInput | None,
    base: Path,
    add: Callable[[str], None],
) -> Launch | None:
    """One VM's `launch`; None (after reporting) when it is invalid."""
    problems: list[str] = []
    li = validate_input(LaunchInput, raw, where, problems)
    for p in problems:
        add(p)
    if li is None:
        for key in ("image", "kernel", "initrd"):  # the files' problems too, all at once
            value = raw.get(key) if isinstance(raw, dict) else None
            if isinstance(value, str) and not any(p.startswith(f"{where}.{key}:") for p in problems):
                boot_file(value, f"{where}.{key}", base, add)
        return None
    ok = True
    accel = _accel(li.accel, f"{where}.accel", add)
    if li.accel is not None and accel is None:
        ok = False
    if (li.image is None) == (li.kernel is None):
        both = "both" if li.image is not None else "neither"
        add(f"{where}: give either image or kernel (+ initrd, append), got {both}")
        ok = False
    if li.image is not None:
        for key, value in (("initrd", li.initrd), ("append", li.append)):
            if value is not None:
                add(f"{where}.{key}: only with kernel (direct kernel boot), not with image {li.image!r}")
                ok = False
    if li.append is not None and (len(li.append) > MAX_APPEND or not all(c.isprintable() for c in li.append)):
        add(f"{where}.append: printable text of at most {MAX_APPEND} characters, got {li.append[:80]!r}")
        ok = False
    files = {k: getattr(li, k) for k in ("image", "kernel", "initrd") if getattr(li, k) is not None}
    found = {k: boot_file(v, f"{where}.{k}", base, add) for k, v in files.items()}
    if not ok or None in found.values() or qemu is None:
        return None
    image = found.get("image")
    return Launch(
        vm=int(vm["id"]),
        worker=str(vm["worker"]),
        binary=qemu.binary,
        accel=accel or qemu.accel,  # type: ignore[arg-type]
        cpus=li.cpus,
        memory_mb=li.memory_mb,
        image=image,
        image_format=_image_format(image.local) if image else None,
        kernel=found.get("kernel"),
        initrd=found.get("initrd"),
        append=li.append,
    )


def parse_launches(raw: Mapping[str, str], base: Path, add: Callable[[str], None]) -> dict[int, Launch]:
    """Every VM's launch (by VM id) from the raw stack config; problems go to `add`."""
    qraw = _json(raw.get(f"{NAMESPACE}:qemu"))
    qemu = parse_qemu(qraw, add)
    sraw = _json(raw.get(f"{NAMESPACE}:slice"))
    vms = sraw.get("vms") if isinstance(sraw, dict) else None
    out: dict[int, Launch] = {}
    for i, vm in enumerate(vms if isinstance(vms, list) else []):
        if not isinstance(vm, dict) or vm.get("launch") is None:
            continue
        if not isinstance(vm.get("id"), int) or not isinstance(vm.get("worker"), str):
            continue  # the VM itself is invalid: load_config reports it
        launch = parse_launch(vm["launch"], vm, f"{NAMESPACE}:slice.vms[{i}].launch", qemu, base, add)
        if launch is not None:
            out[launch.vm] = launch
    return out


def _json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except (ValueError, RecursionError):  # huge numbers, deep nesting too
            return None  # load_config reports it
    return value


def load(
    raw: Mapping[str, str], stack: str, base: Path | None = None
) -> tuple[SliceConfig, dict[int, Launch]]:
    """The validated config and launches; one `ConfigError` with every problem of both."""
    problems: list[str] = []
    config: SliceConfig | None = None
    try:
        config = load_config(raw, stack)
    except ConfigError as exc:
        problems += exc.problems
    launches = parse_launches(raw, base or Path.cwd(), problems.append)
    if problems:
        raise ConfigError(problems)
    assert config is not None
    return config, launches
