"""The launched VMs of a slice: boot files copied to the workers, and one QEMU process per VM.

`launch_plan` is pure: per worker, each boot file once (content-addressed), and per VM its `QemuVmSpec`
(with exactly the VM's `qemuNetArgs`), the TAPs it waits for and the copies it boots from.
`add_launched_vms` instantiates that plan under the slice component: the copies with pulumi-command
(`remote.CopyToRemote` into `images/incoming/`, then a `remote.Command` that checks the sha256 and moves the
file into place unless it is already there, so a base another VM uses is never rewritten), over SSH with
the host key pinned from the configured known_hosts and the private key as a Pulumi secret. The image
cache is the SSH user's alone (0700, files 0600; the state root above it 0711, so that user reaches it
under sudo); a copy that fails its check is removed, and this slice's leftovers in `incoming/` (a copy cut
short) go when the worker's image directories are made and when the slice is destroyed.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko
import pulumi
from pulumi_command import remote

from components.bootfiles import BootFile
from components.launch import Launch
from components.model import NAMESPACE, SliceConfig
from components.outputs import qemu_net_args
from components.plan import SlicePlan
from components.resources import pool_name
from providers.kinds.qemu_vm import IMAGES_DIR, BootFileRef, QemuVm, QemuVmSpec, console_path
from vocabulary import naming, specs
from vocabulary.errors import ConfigError

INCOMING_DIR = f"{IMAGES_DIR}/incoming"

_PLACE = r"""f=$1; final=$2; sum=$3
trap 'rm -f "$f"' EXIT
if [ ! -f "$final" ]; then
  s=$(sha256sum "$f" | cut -d' ' -f1)
  [ "$s" = "$sum" ] || { echo "$f has sha256 $s, want $sum" >&2; exit 1; }
  chmod 0600 "$f" && mv -f "$f" "$final"
fi
if [ -O "$final" ]; then chmod 0600 "$final"; fi
"""
"""Check the copy's sha256 and move it into place; the copy in `incoming/` never stays. A file already in
place gets the cache's mode too (one placed before the cache was private keeps its mode otherwise)."""

_CLEAN = r"""in=$1; slice=$2
for f in "$in/$slice"-*; do
  rest=${f#"$in/$slice"-}
  case $rest in *[!0-9a-f]*|'') continue ;; esac
  [ "${#rest}" -eq 64 ] && rm -f -- "$f"
done
exit 0
"""
"""Remove this slice's copies from `incoming/` (`<slice>-<sha256>`; another slice's name never matches)."""


@dataclass(frozen=True)
class ImageCopy:
    """One boot file on one worker."""

    worker: str
    file: BootFile

    @property
    def name(self) -> str:
        return f"image-{self.worker}-{self.file.sha256[:12]}"


@dataclass(frozen=True)
class VmLaunch:
    name: str
    spec: QemuVmSpec
    taps: tuple[str, ...]
    """Resource names (suffixes) of the VM's TAPs."""
    copies: tuple[str, ...]
    """Resource names (suffixes) of the copies of its boot files."""


def _ref(f: BootFile | None) -> BootFileRef | None:
    return None if f is None else BootFileRef(path=f.remote, sha256=f.sha256)


def launch_plan(plan: SlicePlan, launches: Mapping[int, Launch]) -> tuple[list[ImageCopy], list[VmLaunch]]:
    """Every copy (once per worker and file) and every VM launch of the slice, in config order."""
    config = plan.config
    copies: dict[tuple[str, str], ImageCopy] = {}
    vms: list[VmLaunch] = []
    for vm in config.vms:
        launch = launches.get(vm.id)
        if launch is None:
            continue
        ifaces = plan.by_vm(vm.id)
        mine = []
        for f in launch.files:
            copy = copies.setdefault((vm.worker, f.sha256), ImageCopy(vm.worker, f))
            mine.append(copy.name)
        ep = config.workers[vm.worker]
        spec = QemuVmSpec(
            slice=config.slice_name,
            host=specs.Endpoint(name=ep.name, address=ep.address, port=ep.port),
            bridge=config.bridge,
            vm=vm.id,
            binary=launch.binary,
            accel=launch.accel,
            cpus=launch.cpus,
            memory_mb=launch.memory_mb,
            kernel=_ref(launch.kernel),
            initrd=_ref(launch.initrd),
            append=launch.append,
            image=_ref(launch.image),
            image_format=launch.image_format,
            net_args=qemu_net_args(ifaces),
        )
        taps = tuple(f"tap-{ip.vm}-{ip.iface}" for ip in ifaces)
        vms.append(VmLaunch(f"vm-{vm.id}", spec, taps, tuple(dict.fromkeys(mine))))
    return list(copies.values()), vms


def host_key(known_hosts: Path, ep: specs.Endpoint) -> str:
    """The worker's public key line (`type base64`) from known_hosts; ConfigError when there is none."""
    name = ep.address if ep.port == 22 else f"[{ep.address}]:{ep.port}"
    where = f"{NAMESPACE}:ssh.knownHostsPath"
    try:
        entry = paramiko.HostKeys(str(known_hosts)).lookup(name)
    except OSError as exc:
        raise ConfigError([f"{where}: cannot read {str(known_hosts)!r}: {exc}"]) from None
    if not entry:
        raise ConfigError([f"{where}: no host key for {name} (worker {ep.name}) in {str(known_hosts)!r}"])
    key = entry.get("ssh-ed25519") or next(iter(entry.values()))
    return f"{key.get_name()} {key.get_base64()}"


def private_key(config: SliceConfig, base: Path) -> pulumi.Output[str]:
    """The SSH private key as a Pulumi secret: the secret config key, or the key file's text."""
    if config.ssh.private_key is not None:
        return pulumi.Output.secret(config.ssh.private_key.get_secret_value())
    assert config.ssh.private_key_path is not None
    path = Path(os.path.expanduser(config.ssh.private_key_path))
    path = path if path.is_absolute() else base / path
    try:
        return pulumi.Output.secret(path.read_text())
    except OSError as exc:
        where = f"{NAMESPACE}:ssh.privateKeyPath"
        raise ConfigError([f"{where}: cannot read {str(path)!r}: {exc.strerror}"]) from None


def _sudo(config: SliceConfig, argv: list[str]) -> str:
    return shlex.join(["sudo", "-n", *argv] if config.ssh.sudo else argv)


def add_launched_vms(
    parent: pulumi.ComponentResource,
    name: str,
    plan: SlicePlan,
    launches: Mapping[int, Launch],
    resources: dict[str, pulumi.Resource],
    base: Path | None = None,
    uid: pulumi.Input[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Create the copies and QEMU processes under `parent` (into `resources`); per VM id, its new outputs.

    Everything waits for the slice's pool claim (in `resources`): a refused claim changes no worker. `uid`:
    the slice's uid (`providers.kinds.identity`), an input of each `QemuVm`."""
    copies, vms = launch_plan(plan, launches)
    if not vms:
        return {}
    base = base or Path.cwd()
    config = plan.config
    known = Path(os.path.expanduser(config.ssh.known_hosts_path))
    known = known if known.is_absolute() else base / known
    key = private_key(config, base)
    conns: dict[str, remote.ConnectionArgs] = {}
    dirs: dict[str, remote.Command] = {}
    for copy in copies:
        if copy.worker not in conns:
            ep = config.workers[copy.worker]
            conns[copy.worker] = remote.ConnectionArgs(
                host=ep.address,
                port=ep.port,
                user=config.ssh.user,
                private_key=key,
                host_key=host_key(known, ep),
            )
            root = ["install", "-d", "-m", "0711", naming.STATE_ROOT]
            owner = ["install", "-d", "-m", "0700", "-o", config.ssh.user, IMAGES_DIR, INCOMING_DIR]
            clean = _sudo(config, ["sh", "-c", _CLEAN, "sh", INCOMING_DIR, config.slice_name])
            dirs[copy.worker] = remote.Command(
                f"{name}-images-{copy.worker}",
                connection=conns[copy.worker],
                create=" && ".join([_sudo(config, root), _sudo(config, owner), clean]),
                delete=clean,
                opts=pulumi.ResourceOptions(
                    parent=parent, depends_on=[resources[pool_name(config.pool.start)]]
                ),
            )
        incoming = f"{INCOMING_DIR}/{config.slice_name}-{copy.file.sha256}"
        sent = remote.CopyToRemote(
            f"{name}-{copy.name}-send",
            connection=conns[copy.worker],
            source=pulumi.FileAsset(copy.file.local),
            remote_path=incoming,
            opts=pulumi.ResourceOptions(parent=parent, depends_on=[dirs[copy.worker]]),
        )
        place = ["sh", "-c", _PLACE, "sh", incoming, copy.file.remote, copy.file.sha256]
        resources[copy.name] = remote.Command(
            f"{name}-{copy.name}",
            connection=conns[copy.worker],
            create=_sudo(config, place),
            triggers=[copy.file.sha256],
            opts=pulumi.ResourceOptions(parent=parent, depends_on=[sent]),
        )
    out: dict[str, dict[str, Any]] = {}
    for vm in vms:
        deps = [resources[n] for n in (*vm.taps, *vm.copies)]
        opts = pulumi.ResourceOptions(parent=parent, depends_on=deps)
        res = QemuVm(f"{name}-{vm.name}", vm.spec, opts, uid=uid)
        resources[vm.name] = res
        out[str(vm.spec.vm)] = {
            "console": console_path(vm.spec.vm),
            "running": res.observed.apply(lambda o: bool((o or {}).get("running"))),
        }
    return out
