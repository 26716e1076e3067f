"""A launched VM's cloud-init config: `slice.vms[].launch.cloudInit` over the slice-wide defaults in
`slice.cloudInit`, merged per key, validated at preview (every problem at its key path).

Keys: `sshAuthorizedKeys` (OpenSSH public keys, `vocabulary.values.SshPublicKey`, no key twice), `user`
(a new login, default `cloud`), `userData` (the path of a `#cloud-config` file, read under the rules of
boot files: inside `cloudrepo:qemu.imageDirs`, relative to the project; merged after ours) and `hostname`
(default `vm<id>`; a VM's own only: one name for every VM is no default). A VM gets a seed when its launch
has `cloudInit`, or when the slice has `slice.cloudInit` and the VM boots a disk image (a kernel-only
launch has no disk for cloud-init to keep its state on); `cloudInit` on a launch without `image` is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, StrictStr, field_validator

from components.bootfiles import ImageDirs, config_file
from components.cloudinit import (
    CLOUD_CONFIG,
    DEFAULT_USER,
    MAX_INTERFACES,
    MAX_KEYS,
    check_extra,
    check_user,
    default_hostname,
    unique_keys,
)
from components.inputs import _Input
from components.model import NAMESPACE, CloudInit
from vocabulary.problems import validate_input
from vocabulary.values import GuestHostName, LoginName, SshPublicKey

MAX_USER_DATA = 1 << 16
"""Bytes of a `userData` file."""
LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader where PyYAML has it: linear in the text, with a nesting limit (the pure-Python
scanner takes tens of seconds on a 64 KiB file of nested brackets)."""


class CloudInitInput(_Input):
    """`launch.cloudInit` or `slice.cloudInit`: every key optional (merged per key, then defaults)."""

    ssh_authorized_keys: list[SshPublicKey] | None = Field(
        default=None, alias="sshAuthorizedKeys", min_length=1, max_length=MAX_KEYS
    )
    user: LoginName | None = None
    user_data: StrictStr | None = Field(default=None, alias="userData")
    hostname: GuestHostName | None = None

    @field_validator("user")
    @classmethod
    def _new_login(cls, value: str | None) -> str | None:
        return None if value is None else check_user(value)

    @field_validator("ssh_authorized_keys")
    @classmethod
    def _once(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else unique_keys(value)


@dataclass(frozen=True)
class Defaults:
    """`slice.cloudInit`, validated, its `userData` read once."""

    given: bool
    values: CloudInitInput
    extra: dict[str, Any] | None = None
    ok: bool = True


def parse_defaults(
    raw: Any, where: str, base: Path, dirs: ImageDirs | None, add: Callable[[str], None]
) -> Defaults:
    """`slice.cloudInit` (`where` its key path)."""
    if raw is None:
        return Defaults(False, CloudInitInput())
    problems: list[str] = []
    got = validate_input(CloudInitInput, raw, where, problems)
    for p in problems:
        add(p)
    ok = isinstance(got, CloudInitInput)
    if isinstance(raw, dict) and raw.get("hostname") is not None:
        add(f"{where}.hostname: a VM's own (launch.cloudInit.hostname; default vm<id>), not the slice's")
        ok = False
    extra = _user_data_of(raw, problems, where, base, dirs, add)
    ok = ok and (extra is not None or not isinstance(raw, dict) or raw.get("userData") is None)
    return Defaults(True, got if isinstance(got, CloudInitInput) else CloudInitInput(), extra, ok)


def _user_data_of(
    raw: Any, problems: list[str], where: str, base: Path, dirs: ImageDirs | None, add: Callable[[str], None]
) -> dict[str, Any] | None:
    """The `userData` file of the mapping `raw` read, unless absent or its value is already refused."""
    text = raw.get("userData") if isinstance(raw, dict) else None
    key = f"{where}.userData"
    if not isinstance(text, str) or dirs is None or any(p.startswith(f"{key}:") for p in problems):
        return None
    got: dict[str, Any] | None = user_data(text, key, base, dirs, add)
    return got


def user_data(text: str, where: str, base: Path, dirs: ImageDirs, add: Callable[[str], None]) -> Any:
    """The mapping of the `#cloud-config` file `text`, or None (after a problem that names the path, never
    the content). Aliases are refused: a few lines of them expand into more data than the seed may carry."""
    data = config_file(text, where, base, dirs, add, MAX_USER_DATA)
    if data is None:
        return None
    try:
        content = data.decode("utf-8")
    except UnicodeDecodeError:
        add(f"{where}: {text!r} is not UTF-8 text")
        return None
    if not content.startswith(CLOUD_CONFIG):
        add(f"{where}: {text!r} must start with the line {CLOUD_CONFIG.strip()!r}")
        return None
    try:
        if any(isinstance(token, yaml.AliasToken) for token in yaml.scan(content, Loader=LOADER)):
            add(f"{where}: {text!r} uses YAML aliases (*name): write the values out")
            return None
        value = yaml.load(content, Loader=LOADER)  # noqa: S506 (LOADER is a safe loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        add(f"{where}: {text!r} is not YAML{at}")
        return None
    except RecursionError:
        add(f"{where}: {text!r} is nested too deeply (cloud-config takes at most 32 levels)")
        return None
    if value is None:
        return {}
    if not isinstance(value, dict):
        add(f"{where}: {text!r} must hold a mapping of cloud-config keys, not a {type(value).__name__}")
        return None
    try:
        return check_extra(value)
    except ValueError as exc:
        add(f"{where}: {text!r}: {exc}")
        return None


def parse_cloud_init(
    raw: Any,
    defaults: Defaults,
    vm: Mapping[str, Any],
    where: str,
    has_image: bool,
    base: Path,
    dirs: ImageDirs | None,
    add: Callable[[str], None],
) -> CloudInit | None:
    """One launched VM's cloud-init (`raw` its `launch.cloudInit`, `where` that key's path), merged over
    `defaults`; None when the VM gets no seed or after its problems."""
    if raw is None and (not defaults.given or not has_image):
        return None
    problems: list[str] = []
    own = validate_input(CloudInitInput, {} if raw is None else raw, where, problems)
    for p in problems:
        add(p)
    ok = own is not None and defaults.ok
    if raw is not None and not has_image:
        add(f"{where}: cloud-init needs a disk image to boot (launch.image), this launch has none")
        ok = False
    count = vm.get("dataInterfaces", 0)
    if isinstance(count, int) and count + 1 > MAX_INTERFACES:
        vm_at = where.rsplit(".launch.", 1)[0]
        add(
            f"{vm_at}.dataInterfaces: {count}: a VM with a cloud-init seed has at most {MAX_INTERFACES - 1} "
            f"(its seed names at most {MAX_INTERFACES} interfaces)"
        )
        ok = False
    if not isinstance(own, CloudInitInput):
        _user_data_of(raw, problems, where, base, dirs, add)
        return None
    d = defaults.values
    keys = own.ssh_authorized_keys or d.ssh_authorized_keys
    if not keys and defaults.ok:
        add(
            f"{where}.sshAuthorizedKeys: at least one OpenSSH public key is needed "
            f"(here or in {NAMESPACE}:slice.cloudInit.sshAuthorizedKeys)"
        )
        ok = False
    extra = defaults.extra
    if own.user_data is not None:
        extra = _user_data_of(raw, problems, where, base, dirs, add)
        ok = ok and extra is not None
    if not ok or not keys:
        return None
    return CloudInit(
        user=own.user or d.user or DEFAULT_USER,
        hostname=own.hostname or default_hostname(int(vm["id"])),
        ssh_authorized_keys=tuple(keys),
        user_data=extra,
    )
