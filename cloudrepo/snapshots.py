"""`cloudrepo snapshot save|list|restore|delete NAME SNAP`: the I/O (the checkout's snapshot store, the
workers over SSH through `hostaccess`, the engine). The programs, the manifest and the names are
`snapshot.py`'s.

`save` keeps the stack config file and each launched VM's disk; `restore` checks everything first
(the deployment that saved it, the boot files unchanged, no running VM without `--force`), then reverts
the disks (each VM stopped, its overlay replaced), writes the config back and runs one `up`, which starts
the VMs again on their reverted disks. `cloudrepo destroy` removes the slice's snapshots with it.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paramiko

from cloudrepo import hostaccess, stackfile
from cloudrepo.engine import SliceError, Slices
from cloudrepo.snapshot import (
    CONFIG,
    MANIFEST,
    NO_MONITOR,
    NOT_OURS,
    Manifest,
    VmSnap,
    delete_argv,
    identity_uid,
    launched,
    load_manifest,
    parse_lines,
    restore_argv,
    running_argv,
    save_argv,
)
from transport.script import command_line
from vocabulary import naming
from vocabulary.errors import ConfigError

Say = Callable[[str], None]


def store(project: Path, stack: str) -> Path:
    """Where the checkout keeps a slice's snapshots (config and manifest)."""
    return project / ".cloudrepo" / stack / "snapshots"


def manifests(project: Path, stack: str) -> list[Manifest]:
    found = []
    root = store(project, stack)
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        try:
            found.append(load_manifest((d / MANIFEST).read_text()))
        except (OSError, ValueError):
            continue
    return found


def load(project: Path, stack: str, snap: str) -> Manifest:
    d = store(project, stack) / snap
    try:
        return load_manifest((d / MANIFEST).read_text())
    except FileNotFoundError:
        have = ", ".join(m.name for m in manifests(project, stack)) or "none"
        raise SliceError(f"slice {stack!r} has no snapshot {snap!r} (its snapshots: {have})") from None
    except (OSError, ValueError) as exc:
        raise SliceError(f"snapshot {snap!r} of slice {stack!r}: {d / MANIFEST}: {exc}") from None


class Workers:
    """The slice's workers for one command: each logged in to once (its key secret decrypted through the
    engine once), a connection per program."""

    def __init__(self, slices: Slices, name: str) -> None:
        self.slices, self.name = slices, name
        self.logins: dict[str, tuple[Any, Any]] = {}

    def run(self, worker: str, argv: list[str]) -> tuple[int, str, str]:
        """Run a worker program (as root by `sudo -n` when `ssh.sudo`): status, stdout, stderr."""
        if worker not in self.logins:
            self.logins[worker] = hostaccess.worker_login(self.slices, self.name, worker)
        endpoint, login = self.logins[worker]
        client = hostaccess.connect(endpoint, login)
        try:
            _, out, err = client.exec_command(command_line(argv, login.sudo))
            text, errors = out.read().decode(errors="replace"), err.read().decode(errors="replace")
            return out.channel.recv_exit_status(), text, errors.strip()
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise SliceError(f"{worker}: the SSH session failed: {exc or type(exc).__name__}") from None
        finally:
            client.close()


def _refused(worker: str, status: int, err: str, what: str) -> SliceError:
    if status == NO_MONITOR:
        return SliceError(
            f"{err} on {worker} runs without a QMP monitor (started by an older version), so its disk cannot "
            "be copied consistently while it runs; stop it (the next `cloudrepo deploy` starts it with one) "
            "and save again"
        )
    if status == NOT_OURS:
        return SliceError(f"{worker}: {err}; nothing of it was touched")
    return SliceError(f"{worker}: {what} failed (status {status}): {err or '(no message)'}")


def _deployment(slices: Slices, name: str) -> tuple[dict[str, Any], Path, dict[str, Any]]:
    outputs = slices.outputs(name)
    if not outputs.get("vms"):
        raise SliceError(f"slice {name!r} is not deployed (cloudrepo deploy {name})")
    path = stackfile.stack_file(slices.project, name)
    if not path.exists():
        raise SliceError(f"slice {name!r}: {path.name} is not in this checkout (pass --project DIR)")
    return outputs, path, stackfile.config_of(stackfile.read(path))


def _mark(
    slices: Slices, name: str, config: Mapping[str, Any], outputs: Mapping[str, Any]
) -> tuple[str, Any]:
    from components.slice import IDENTITY_NAME  # the program's resources: loaded by the verbs that need it

    try:
        prepared = stackfile.check(config, name, outputs, slices.project)
    except ConfigError as exc:
        raise SliceError(str(exc)) from exc
    state = slices.stack(name).export_stack().deployment or {}
    uid = identity_uid(state.get("resources") or [], IDENTITY_NAME)
    return naming.owner_mark(prepared.config.slice_name, uid), prepared


def _files(prepared: Any) -> dict[int, dict[str, str]]:
    out: dict[int, dict[str, str]] = {}
    for launch in prepared.vms:
        spec = launch.spec
        refs = {"kernel": spec.kernel, "initrd": spec.initrd, "image": spec.image}
        out[spec.vm] = {k: r.sha256 for k, r in refs.items() if r is not None}
    return out


def save(slices: Slices, name: str, snap: str, say: Say) -> Manifest:
    outputs, path, config = _deployment(slices, name)
    local = store(slices.project, name) / snap
    if local.exists():
        raise SliceError(f"slice {name!r} already has a snapshot {snap!r} (delete it first)")
    mark, prepared = _mark(slices, name, config, outputs)
    files = _files(prepared)
    vms = launched(outputs)
    by_worker: dict[str, list[int]] = {}
    for vm, worker in vms:
        by_worker.setdefault(worker, []).append(vm)
    hosts = Workers(slices, name)
    sizes: dict[int, str] = {}
    done: list[str] = []
    started = datetime.now(UTC)
    for worker, ids in sorted(by_worker.items()):
        status, out, err = hosts.run(worker, save_argv(mark, snap, ids))
        if status != 0:
            for w in done:
                hosts.run(w, delete_argv(mark, [snap]))
            raise _refused(worker, status, err, f"snapshot {snap!r} of {ids}")
        done.append(worker)
        sizes.update(parse_lines(out, "vm"))
    snaps = []
    for vm, worker in vms:
        size = sizes.get(vm, "size=none").partition("=")[2]
        disk = size.isdigit()
        snaps.append(VmSnap(vm, worker, disk, int(size) if disk else 0, files.get(vm, {})))
    manifest = Manifest(snap, name, mark, started.strftime("%Y-%m-%dT%H:%M:%SZ"), tuple(snaps))
    tmp = local.with_name(f".{snap}.part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True, mode=0o700)
    local.parent.chmod(0o700)
    for file, data in ((CONFIG, path.read_bytes()), (MANIFEST, manifest.dump().encode())):
        (tmp / file).touch(mode=0o600)
        (tmp / file).write_bytes(data)
    tmp.replace(local)
    took = (datetime.now(UTC) - started).total_seconds()
    disks = [v.vm for v in snaps if v.disk]
    say(
        f"snapshot {snap} of slice {name}: config and the disks of {len(disks)} VM(s) {disks} saved in "
        f"{took:.1f} s" + "".join(f"; vm {v.vm} has no disk (config only)" for v in snaps if not v.disk)
    )
    return manifest


def running(hosts: Workers, m: Manifest) -> list[tuple[int, str]]:
    """The snapshot's disk VMs that run now, with their workers."""
    found = []
    for worker, ids in sorted(m.workers().items()):
        status, out, err = hosts.run(worker, running_argv(m.mark, ids))
        if status != 0:
            raise _refused(worker, status, err, "the VMs' check")
        found += [(vm, worker) for vm in parse_lines(out, "running")]
    return found


def restore(slices: Slices, name: str, snap: str, force: bool, say: Say) -> None:
    outputs, path, _ = _deployment(slices, name)
    m = load(slices.project, name, snap)
    saved = store(slices.project, name) / snap / CONFIG
    config = stackfile.config_of(stackfile.read(saved))
    mark, prepared = _mark(slices, name, config, outputs)
    if mark != m.mark:
        raise SliceError(
            f"snapshot {snap!r} was saved by {naming.describe_mark(m.mark)}; slice {name!r} is now "
            f"{naming.describe_mark(mark)} (destroyed and deployed again, or renamed): its disks are not "
            "this deployment's; nothing was changed"
        )
    now = _files(prepared)
    for v in m.vms:
        for key, sha in v.files.items():
            if now.get(v.vm, {}).get(key) != sha:
                raise SliceError(
                    f"snapshot {snap!r}: vm {v.vm}'s {key} is no longer the file it was saved with "
                    f"(sha256 {sha[:16]}..., now {now.get(v.vm, {}).get(key, 'none')[:16]}); nothing was "
                    "changed"
                )
    hosts = Workers(slices, name)
    live = running(hosts, m)
    if live and not force:
        named = ", ".join(f"{vm} ({worker})" for vm, worker in live)
        raise SliceError(
            f"restore {name} {snap}: VM(s) {named} are running: their disks' changes since the snapshot "
            "would be lost; pass --force to stop them and revert; nothing was changed"
        )
    from providers.kinds.qemu_vm import STOP_WAIT  # as `QemuVm` stops a VM

    for worker, ids in sorted(m.workers().items()):
        status, _, err = hosts.run(worker, restore_argv(m.mark, snap, ids, STOP_WAIT))
        if status != 0:
            raise _refused(worker, status, err, f"restore of {ids}")
        say(f"{worker}: the disks of VM(s) {ids} reverted to snapshot {snap}")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(saved.read_bytes())
    tmp.replace(path)
    say(f"{path.name}: the config of snapshot {snap} written back; deploying")
    slices.run("up", name, say)


def delete(slices: Slices, name: str, snap: str, say: Say) -> None:
    slices.outputs(name)  # an unknown slice is an error of its own
    m = load(slices.project, name, snap)
    hosts = Workers(slices, name)
    for worker in sorted({v.worker for v in m.vms if v.disk}):
        status, _, err = hosts.run(worker, delete_argv(m.mark, [snap]))
        if status != 0:
            raise _refused(worker, status, err, f"delete of snapshot {snap!r}")
    shutil.rmtree(store(slices.project, name) / snap)
    say(f"snapshot {snap} of slice {name} deleted")


def delete_all(slices: Slices, name: str, say: Say) -> None:
    """Every snapshot of the slice (with `cloudrepo destroy`)."""
    for m in manifests(slices.project, name):
        delete(slices, name, m.name, say)
