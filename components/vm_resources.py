"""The launched VMs' resources under the slice component: boot files copied to the workers with
pulumi-command, and one `QemuVm` per VM, from `components.vms.launch_plan`.

The copies: `remote.CopyToRemote` into `images/incoming/`, then a `remote.Command` that checks the sha256
and moves the file into place unless it is already there (a base another VM uses is never rewritten),
over SSH with the host key pinned from the configured known_hosts and the private key as a Pulumi secret.
The image cache is the SSH user's alone (0700, files 0600; the state root above it 0711, so that user
reaches it under sudo); a copy that fails its check is removed, and this slice's leftovers in `incoming/`
(a copy cut short) go when the worker's image directories are made and when the slice is destroyed.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import paramiko
import pulumi
from pulumi_command import remote

from components.bootfiles import BootFile
from components.image_store import Registry, StoreError, open_store
from components.model import NAMESPACE, SliceConfig
from components.resources import pool_name
from components.vms import ImageCopy, VmLaunch
from providers.kinds.cloud_seed import CloudSeed
from providers.kinds.qemu_vm import QemuVm
from vocabulary import naming
from vocabulary.errors import ConfigError
from vocabulary.naming import IMAGES_DIR, console_path
from vocabulary.values import Endpoint

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


def host_key(known_hosts: Path, ep: Endpoint) -> str:
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


def fetch_named(file: BootFile) -> None:
    """A registry image's bytes into the project's cache (`file.local`) when they are not there yet:
    fetched from the backend and checked against the sha256 of the registry's entry. At preview too: the
    engine hashes the `FileAsset` of the copy then."""
    if file.registry is None or Path(file.local).is_file():
        return
    try:
        Registry(open_store()).fetch(file.registry, file.sha256, Path(file.local))
    except StoreError as exc:  # names the image already
        raise ConfigError([str(exc)]) from None
    except Exception as exc:  # the backend's storage: a file system or an S3 endpoint
        raise ConfigError(
            [f"image {file.registry!r}: cannot fetch its bytes from the backend: {exc}"]
        ) from None


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
    config: SliceConfig,
    copies: Sequence[ImageCopy],
    vms: Sequence[VmLaunch],
    resources: dict[str, pulumi.Resource],
    base: Path | None = None,
    uid: pulumi.Input[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Create the copies, seeds and QEMU processes under `parent` (into `resources`); per VM id, its new
    outputs (`hostKey`: its seed's public host key, for the VM's `cloudInit` output).

    Everything waits for the slice's pool claim (in `resources`): a refused claim changes no worker. `uid`:
    the slice's uid (`providers.identity`), an input of each `QemuVm`."""
    if not vms:
        return {}
    base = base or Path.cwd()
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
        fetch_named(copy.file)
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
        extra: dict[str, Any] = {}
        if vm.seed is not None:
            claim = resources[pool_name(config.pool.start)]
            seed_opts = pulumi.ResourceOptions(parent=parent, depends_on=[claim])
            seed = CloudSeed(f"{name}-{vm.seed_name}", vm.seed, seed_opts, uid=uid)
            resources[vm.seed_name] = seed
            extra["hostKey"] = seed.observed.apply(lambda o: (o or {}).get("hostKey"))
        claim_of = [vm.claim_name] if vm.claim_name in resources else []  # its share of the worker
        deps = [resources[n] for n in (*vm.taps, *vm.copies, *([vm.seed_name] if vm.seed else []), *claim_of)]
        opts = pulumi.ResourceOptions(parent=parent, depends_on=deps)
        res = QemuVm(f"{name}-{vm.name}", vm.spec, opts, uid=uid)
        resources[vm.name] = res
        out[str(vm.spec.vm)] = {
            "console": console_path(vm.spec.vm),
            "running": res.observed.apply(lambda o: bool((o or {}).get("running"))),
            **extra,
        }
    return out
