"""VM launch config: each VM's optional `launch` and the stack's `cloudrepo:qemu`, validated like the rest.

`components.config.load_config` calls `parse_launches` in the same pass as every other check (its problems
join the others in one `ConfigError`) and keeps the result in `SliceConfig.launches`. The files a VM boots
from are checked and hashed here (at `pulumi preview`) by `components.bootfiles`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, StrictStr

from components.bootfiles import BootFile, ImageDirs, boot_file, parse_image_dirs
from components.guest import CloudInitInput, Defaults, parse_cloud_init, parse_defaults
from components.image_store import Registry, cached, open_store
from components.images import ImageEntry, is_name, name_problem
from components.inputs import _Input
from components.model import NAMESPACE, Launch
from components.placement import AUTO
from vocabulary.problems import validate_input
from vocabulary.specs import Accel, Cpus, KernelAppend, MemoryMb, QemuBinary
from vocabulary.values import value_problem

DEFAULT_BINARY = "qemu-system-x86_64"
DEFAULT_ACCEL = "kvm"
QCOW2_MAGIC = b"QFI\xfb"

ImageLookup = Callable[[str], ImageEntry | None]
"""A registry name -> its entry (None: no such image); an exception when the registry cannot be read."""


def backend_lookup(name: str) -> ImageEntry | None:
    """The entry of `name` in the registry of the backend the engine uses (`components.image_store`)."""
    return Registry(open_store()).lookup(name)


def named_image(
    name: str, where: str, base: Path, lookup: ImageLookup, add: Callable[[str], None]
) -> tuple[BootFile, Literal["qcow2", "raw"]] | None:
    """The registry image `name` as a boot file (its bytes' place in the project's cache, its sha256 from
    the registry: nothing is read here) and its format; else a problem."""
    why = name_problem(name)
    if why is not None:
        add(f"{where}: {why} (or a path with a '/')")
        return None
    try:
        entry = lookup(name)
    except Exception as exc:  # the registry's storage: a file system or an S3 endpoint
        add(f"{where}: cannot read the image registry for {name!r}: {exc}")
        return None
    if entry is None:
        add(f"{where}: no image named {name!r} in the registry (cloudrepo image list shows them; a path "
            "needs a '/', such as images/disk.qcow2)")  # fmt: skip
        return None
    local = str(cached(base, entry.sha256))
    return BootFile(local=local, sha256=entry.sha256, registry=entry.name), entry.format


class QemuInput(_Input):
    """`cloudrepo:qemu`: how QEMU runs on the workers."""

    binary: StrictStr = DEFAULT_BINARY
    """A `QemuBinary` (checked after the model, so that one problem hides no other)."""
    accel: StrictStr = DEFAULT_ACCEL
    """An `Accel`: `kvm` or `tcg` (a VM's `launch.accel` overrides it)."""
    image_dirs: Any = Field(default=None, alias="imageDirs")
    """Directories boot files may come from (checked by `parse_image_dirs`)."""


class LaunchInput(_Input):
    """`cloudrepo:slice.vms[].launch`: a disk `image`, `kernel` (+ `initrd`, `append`), or both (the image
    as the first disk, booted by the kernel: `python -m lab image --cloud`)."""

    image: StrictStr | None = None
    kernel: StrictStr | None = None
    initrd: StrictStr | None = None
    append: StrictStr | None = None
    """A `KernelAppend`; with `accel`, checked after the model (one problem hides no other)."""
    cpus: Cpus = 1
    memory_mb: MemoryMb = Field(default=256, alias="memoryMb")
    accel: StrictStr | None = None
    cloud_init: Any = Field(default=None, alias="cloudInit")
    """The VM's NoCloud seed (`components.guest`)."""


def _is(tp: Any, value: str | None, where: str, add: Callable[[str], None]) -> bool:
    """`value` is None or a `tp`; when not, its problem goes to `add`."""
    why = None if value is None else value_problem(tp, value)
    if why is not None:
        add(f"{where}: {why}")
    return why is None


def _image_format(path: str) -> Literal["qcow2", "raw"]:
    with open(path, "rb") as fh:
        return "qcow2" if fh.read(4) == QCOW2_MAGIC else "raw"


def parse_qemu(raw: Any, add: Callable[[str], None]) -> QemuInput | None:
    """`cloudrepo:qemu` but its `imageDirs` (`parse_image_dirs`)."""
    where = f"{NAMESPACE}:qemu"
    problems: list[str] = []
    q = validate_input(QemuInput, {} if raw is None else raw, where, problems)
    for p in problems:
        add(p)
    if q is None:
        return None
    ok = _is(Accel, q.accel, f"{where}.accel", add)
    ok = _is(QemuBinary, q.binary, f"{where}.binary", add) and ok
    return q if ok else None


def parse_launch(
    raw: Any,
    vm: Mapping[str, Any],
    where: str,
    qemu: QemuInput | None,
    base: Path,
    dirs: ImageDirs | None,
    add: Callable[[str], None],
    defaults: Defaults | None = None,
    lookup: ImageLookup = backend_lookup,
) -> Launch | None:
    """One VM's `launch`; None (after reporting) when it is invalid. `defaults`: `slice.cloudInit`;
    `lookup`: the image registry, for an `image` that is a name (`components.images.is_name`)."""
    defaults = defaults or Defaults(False, CloudInitInput())
    problems: list[str] = []
    li = validate_input(LaunchInput, raw, where, problems)
    for p in problems:
        add(p)
    if li is None:
        for key in ("image", "kernel", "initrd"):  # the files' problems too, all at once
            value = raw.get(key) if isinstance(raw, dict) else None
            reported = any(p.startswith(f"{where}.{key}:") for p in problems)
            if isinstance(value, str) and key == "image" and is_name(value) and not reported:
                named_image(value, f"{where}.{key}", base, lookup, add)
            elif isinstance(value, str) and dirs is not None and not reported:
                boot_file(value, f"{where}.{key}", base, dirs, add)
        if isinstance(raw, dict):  # and the seed's
            has_image = isinstance(raw.get("image"), str)
            seed_at = f"{where}.cloudInit"
            parse_cloud_init(raw.get("cloudInit"), defaults, vm, seed_at, has_image, base, dirs, add)
        return None
    ok = _is(Accel, li.accel, f"{where}.accel", add)
    if li.image is None and li.kernel is None:
        add(f"{where}: give image, kernel (+ initrd, append), or both, got neither")
        ok = False
    if li.kernel is None:
        for key, value in (("initrd", li.initrd), ("append", li.append)):
            if value is not None:
                add(f"{where}.{key}: only with kernel (direct kernel boot)")
                ok = False
    ok = _is(KernelAppend, li.append, f"{where}.append", add) and ok
    cloud_init = parse_cloud_init(
        li.cloud_init, defaults, vm, f"{where}.cloudInit", li.image is not None, base, dirs, add
    )
    wants_seed = li.cloud_init is not None or (defaults.given and li.image is not None)
    ok = ok and (cloud_init is not None or not wants_seed)
    named = (
        None
        if li.image is None or not is_name(li.image)
        else named_image(li.image, f"{where}.image", base, lookup, add)
    )
    files = {k: getattr(li, k) for k in ("image", "kernel", "initrd") if getattr(li, k) is not None}
    if li.image is not None and is_name(li.image):
        files.pop("image")
        ok = ok and named is not None
    if dirs is None:
        return None  # imageDirs is wrong: reported
    found = {k: boot_file(v, f"{where}.{k}", base, dirs, add) for k, v in files.items()}
    if not ok or None in found.values() or qemu is None:
        return None
    image = named[0] if named is not None else found.get("image")
    image_format = named[1] if named is not None else _image_format(image.local) if image else None
    return Launch(
        vm=int(vm["id"]),
        worker=str(vm.get("worker") or AUTO),  # the chosen worker replaces it (components.prepare)
        binary=qemu.binary,
        accel=li.accel or qemu.accel,  # type: ignore[arg-type]
        cpus=li.cpus,
        memory_mb=li.memory_mb,
        image=image,
        image_format=image_format,
        kernel=found.get("kernel"),
        initrd=found.get("initrd"),
        append=li.append,
        cloud_init=cloud_init,
    )


def parse_launches(
    values: Mapping[str, Any], base: Path, add: Callable[[str], None], lookup: ImageLookup = backend_lookup
) -> dict[int, Launch]:
    """Every VM's launch (by VM id) from the decoded stack config (`components.inputs.parse_raw`);
    problems go to `add`. `lookup`: the image registry (each name read once)."""
    lookup = functools.cache(lookup)
    qraw = values.get("qemu")
    qemu = parse_qemu(qraw, add)
    dirs = parse_image_dirs(qraw.get("imageDirs") if isinstance(qraw, dict) else None, base, add)
    sraw = values.get("slice")
    vms = sraw.get("vms") if isinstance(sraw, dict) else None
    craw = sraw.get("cloudInit") if isinstance(sraw, dict) else None
    defaults = parse_defaults(craw, f"{NAMESPACE}:slice.cloudInit", base, dirs, add)
    out: dict[int, Launch] = {}
    for i, vm in enumerate(vms if isinstance(vms, list) else []):
        if not isinstance(vm, dict) or vm.get("launch") is None:
            continue
        if not isinstance(vm.get("id"), int) or not isinstance(vm.get("worker", ""), str):
            continue  # the VM itself is invalid: check_vms reports it
        where = f"{NAMESPACE}:slice.vms[{i}].launch"
        launch = parse_launch(vm["launch"], vm, where, qemu, base, dirs, add, defaults, lookup)
        if launch is not None:
            out[launch.vm] = launch
    return out
