"""QemuVm: a VM's QEMU process on its worker, started on the VM's existing TAPs.

State on the worker: `/var/lib/cloudrepo/vms/<vm>/` holds `owner` (the slice), `qemu.pid`, the serial
console `console.sock` with its log `console.log` (what the guest printed since QEMU started; each start
moves the previous boot's to `console.log.1`, so two boots are kept), the QMP monitor `qmp.sock` (through
which `cloudrepo snapshot` pauses the VM while it copies its disk) and, for a disk image, the VM's qcow2
overlay `disk.qcow2` (`disk.base` names its base; the base under `/var/lib/cloudrepo/images/` is never
written). A VM with a NoCloud seed (`QemuVmSpec.seed`, made beside it by its `CloudSeed`) gets it as a
read-only virtio drive after the disk; the seed's path carries its hash, so a new seed is a new argv and the
VM restarts on it. The process is ours when its pid file names it AND its command line is the one we
started (`-pidfile` with our path); it is never found by name.

QEMU is run by the absolute path `binary` resolves to on the worker (`qemu_binary`); a word that is no
executable file is refused before anything starts. Every argument, `append` included, stays one argument.
Host scripts run with umask 077: the directory, overlay, pid file, console socket and log are root's (or
the SSH user's) alone.

`read` reports a dead VM (or one running other arguments) as drift, so `pulumi refresh` shows it and
`pulumi up` starts it again with the same arguments (the same TAPs and MACs); `delete` stops it by pid and
removes the directory.

About 340 lines because the module also holds the VM's spec (its inputs exist for this resource
only). A VM that died is a change for the diff too (`diff_check`): `pulumi preview` shows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from providers import hoststate
from providers.kind import Kind
from providers.kinds import qemu_binary
from providers.pipeline import HostResource
from transport.script import ScriptResult, Step, run, sh
from vocabulary.errors import CloudrepoError, OwnershipConflict
from vocabulary.naming import VMS_DIR, console_log_path, console_path, monitor_path, seed_path, vm_dir
from vocabulary.specs import QemuVmSpec


class VmNotRunning(CloudrepoError):
    """QEMU started but its process is not there."""


SEP = "\x1f"
STOP_WAIT = 10
"""Seconds a VM gets to exit on SIGTERM before SIGKILL."""


def state_dir(spec: QemuVmSpec) -> str:
    return vm_dir(spec.vm)


def pid_file(spec: QemuVmSpec) -> str:
    return f"{state_dir(spec)}/qemu.pid"


def overlay(spec: QemuVmSpec) -> str:
    return f"{state_dir(spec)}/disk.qcow2"


def resource_id(spec: QemuVmSpec) -> str:
    return f"{spec.host.name}/vm/{spec.vm}"


def qemu_argv(spec: QemuVmSpec, binary: str) -> list[str]:
    """The whole QEMU command line (pure): the same inputs always give the same list. `binary` is the
    absolute path `spec.binary` resolves to on the worker (`VmHave.binary`): a word with a `/` is never
    looked up as a built-in, function or alias."""
    if not binary.startswith("/"):
        raise ValueError(f"QEMU must be run by an absolute path, got {binary!r}")
    argv = [binary, "-name", f"vm{spec.vm}", "-accel", spec.accel, "-m", str(spec.memory_mb)]
    argv += ["-smp", str(spec.cpus), "-nodefaults", "-display", "none"]
    argv += ["-chardev", f"{_chardev(spec)},logfile={console_log_path(spec.vm)}"]
    argv += ["-serial", "chardev:console", *_monitor(spec)]
    if spec.kernel is not None:
        argv += ["-kernel", spec.kernel.path]
        if spec.initrd is not None:
            argv += ["-initrd", spec.initrd.path]
        if spec.append is not None:
            argv += ["-append", spec.append]
    if spec.image is not None:
        argv += ["-drive", f"file={overlay(spec)},if=virtio,format=qcow2"]
    if spec.seed is not None:
        argv += ["-drive", f"file={seed_path(spec.vm, spec.seed)},if=virtio,format=raw,readonly=on"]
    argv += list(spec.net_args)
    argv += ["-pidfile", pid_file(spec), "-daemonize"]
    return argv


def _chardev(spec: QemuVmSpec) -> str:
    return f"socket,id=console,path={console_path(spec.vm)},server=on,wait=off"


def _monitor(spec: QemuVmSpec) -> list[str]:
    """The QMP monitor socket (`cloudrepo snapshot` pauses the VM through it while it copies the disk)."""
    return ["-qmp", f"unix:{monitor_path(spec.vm)},server=on,wait=off"]


def _without_log(spec: QemuVmSpec, argv: tuple[str, ...]) -> tuple[str, ...]:
    """`argv` with the console chardev as versions before console logs wrote it (no `logfile`)."""
    return tuple(_chardev(spec) if a.startswith(f"{_chardev(spec)},logfile=") else a for a in argv)


def _without_monitor(spec: QemuVmSpec, argv: tuple[str, ...]) -> tuple[str, ...]:
    """`argv` as versions before the QMP monitor wrote it (no `-qmp`)."""
    mon = _monitor(spec)
    for i in range(len(argv) - 1):
        if list(argv[i : i + 2]) == mon:
            return argv[:i] + argv[i + 2 :]
    return argv


@dataclass(frozen=True)
class VmHave:
    present: bool
    """The VM's state directory exists."""
    owner: str | None
    pid: int | None
    cmdline: tuple[str, ...] | None
    """The live process's argv when the pid file names a live process."""
    base: str | None
    """The base image of the overlay (disk.base)."""
    binary: str | None = None
    """The executable file `spec.binary` resolves to (`command -v`), None when it is no such file."""
    found: str = ""
    """What `command -v` printed for `spec.binary` (empty: nothing)."""

    @property
    def gone(self) -> bool:
        return not self.present and self.cmdline is None

    def ours(self, pidfile: str) -> bool:
        """The pid file's process is a QEMU we started (its argv carries our pid file)."""
        return self.cmdline is not None and pidfile in self.cmdline


_PROBE = r"""d=$1
[ -d "$d" ] || { echo absent; exit 0; }
echo present
printf 'owner=%s\n' "$(cat "$d/owner" 2>/dev/null)"
printf 'base=%s\n' "$(cat "$d/disk.base" 2>/dev/null)"
pid=$(cat "$d/qemu.pid" 2>/dev/null)
case $pid in ''|*[!0-9]*) exit 0 ;; esac
printf 'pid=%s\n' "$pid"
c=$(tr '\000' '\037' <"/proc/$pid/cmdline" 2>/dev/null) || exit 0
[ -n "$c" ] && printf 'cmdline=%s\n' "$c"
exit 0
"""

_STOP = r"""pf=$1; wait=$2
pid=$(cat "$pf" 2>/dev/null) || exit 0
case $pid in ''|*[!0-9]*) exit 0 ;; esac
ours() { tr '\000' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF -- "$pf"; }
ours || exit 0
kill -TERM "$pid" 2>/dev/null
i=0
while ours && [ "$i" -lt $((wait * 10)) ]; do sleep 0.1; i=$((i + 1)); done
if ours; then kill -KILL "$pid" 2>/dev/null; sleep 0.2; fi
! ours
"""

_VERIFY = r"""[ -f "$1" ] || { echo "$1 is missing (the image copy did not happen)" >&2; exit 1; }
s=$(sha256sum "$1" | cut -d' ' -f1)
[ "$s" = "$2" ] || { echo "$1 has sha256 $s, want $2" >&2; exit 1; }
"""

_OVERLAY = r"""d=$1; base=$2; fmt=$3
if [ ! -f "$d/disk.qcow2" ] || [ "$(cat "$d/disk.base" 2>/dev/null)" != "$base" ]; then
  rm -f "$d/disk.qcow2" "$d/disk.base"
  qemu-img create -q -f qcow2 -F "$fmt" -b "$base" "$d/disk.qcow2" || exit
  printf '%s\n' "$base" >"$d/disk.base" || exit
fi
chmod 0600 "$d/disk.qcow2"
"""

_SEED = r"""[ -f "$1" ] || { echo "$1 is missing (the VM's CloudSeed did not make it)" >&2; exit 1; }"""

_ROTATE_LOG = r"""[ ! -f "$1" ] || mv -f "$1" "$1.1" """

_OWNER = r"""printf '%s\n' "$2" >"$1/owner.tmp" && mv -f "$1/owner.tmp" "$1/owner" """


def probe_steps(spec: QemuVmSpec) -> list[Step]:
    return [
        qemu_binary.probe_step(spec.binary),
        sh("vm state", _PROBE, state_dir(spec), kind="probe"),
    ]


def parse_have(res: ScriptResult) -> VmHave:
    binary, found = qemu_binary.parse(res)
    fields: dict[str, str] = {}
    lines = res.out("vm state").split("\n")  # only "\n": an argv may hold other line breaks
    for line in lines[1:]:
        key, _, value = line.partition("=")
        fields[key] = value
    pid = fields.get("pid")
    cmd = fields.get("cmdline")
    return VmHave(
        present=bool(lines) and lines[0] == "present",
        owner=fields.get("owner") or None,
        pid=int(pid) if pid else None,
        cmdline=tuple(cmd.rstrip(SEP).split(SEP)) if cmd else None,
        base=fields.get("base") or None,
        binary=binary,
        found=found,
    )


def check_ownership(spec: QemuVmSpec, have: VmHave) -> None:
    if have.present and have.owner is not None and not spec.adopts(have.owner):
        raise OwnershipConflict(spec.host.name, f"VM {spec.vm} ({state_dir(spec)})", spec.owner, have.owner)


def running_as_wanted(spec: QemuVmSpec, have: VmHave) -> bool:
    """The live process runs exactly the wanted argv. A VM started by a version that ran QEMU by the bare
    `qemu.binary` word (argv[0] that word, the rest the same) is kept as it is, while that word resolves to
    an executable file: its arguments were never parsed again, and an upgrade restarts no VM. Likewise a VM
    started before console logs (its chardev without `logfile`) or before the QMP monitor keeps running;
    it gets them when it restarts (until then `cloudrepo snapshot save` refuses it, naming it)."""
    if have.binary is None or have.cmdline is None:
        return False
    want = tuple(qemu_argv(spec, have.binary))
    accepted = {want, (spec.binary, *want[1:])}
    accepted |= {_without_log(spec, a) for a in accepted}
    accepted |= {_without_monitor(spec, a) for a in accepted}
    return have.cmdline in accepted


def check_binary(spec: QemuVmSpec, have: VmHave) -> str:
    """The executable file QEMU is run by; `qemu_binary.BinaryRefused`, naming the value, when none."""
    return qemu_binary.require(spec.host.name, spec.binary, have.binary, have.found)


def plan_ensure(spec: QemuVmSpec, have: VmHave) -> list[Step]:
    """Nothing when the VM runs with exactly its argv; else stop ours (if any) and start it again.
    Refuses (before any step) a VM of another slice and a `binary` that is no executable file."""
    check_ownership(spec, have)
    binary = check_binary(spec, have)
    d = state_dir(spec)
    steps: list[Step] = [
        run("vm dir", "install", "-d", "-m", "0700", VMS_DIR, d),
        sh("mark vm", _OWNER, d, spec.owner),
    ]
    if running_as_wanted(spec, have):
        return steps if have.owner != spec.owner else []
    steps.append(sh("stop vm", _STOP, pid_file(spec), str(STOP_WAIT)))
    for label, ref in (("kernel", spec.kernel), ("initrd", spec.initrd), ("image", spec.image)):
        if ref is not None:
            steps.append(sh(f"check {label}", _VERIFY, ref.path, ref.sha256))
    if spec.image is not None:
        steps.append(sh("overlay", _OVERLAY, d, spec.image.path, spec.image_format or "raw"))
    if spec.seed is not None:
        steps.append(sh("check seed", _SEED, seed_path(spec.vm, spec.seed)))
    steps.append(
        run("clear console", "rm", "-f", console_path(spec.vm), monitor_path(spec.vm), pid_file(spec))
    )
    steps.append(sh("rotate console log", _ROTATE_LOG, console_log_path(spec.vm)))
    steps.append(run("start qemu", *qemu_argv(spec, binary)))
    steps.append(
        run(
            "console mode", "chmod", "0600", console_path(spec.vm), console_log_path(spec.vm),
            monitor_path(spec.vm),
        )
    )  # fmt: skip
    return steps


def plan_delete(spec: QemuVmSpec, have: VmHave) -> list[Step]:
    """Stop our process by pid, then remove the VM's directory (overlay, socket, pid file)."""
    if not have.present or (have.owner is not None and not spec.owns(have.owner)):
        return []
    return [
        sh("stop vm", _STOP, pid_file(spec), str(STOP_WAIT)),
        run("remove vm dir", "rm", "-rf", state_dir(spec)),
    ]


def observe(spec: QemuVmSpec, have: VmHave) -> tuple[dict[str, Any], list[str]]:
    running = have.ours(pid_file(spec))
    observed = {
        "running": running,
        "pid": have.pid if running else None,
        "console": console_path(spec.vm),
        "owner": have.owner,
    }
    drift: list[str] = []
    if not running:
        drift.append("QEMU not running")
    elif not running_as_wanted(spec, have):
        drift.append("QEMU runs with other arguments")
    if spec.image is not None and have.base != spec.image.path:
        drift.append("overlay missing or on another base")
    return observed, drift


def preflight(spec: QemuVmSpec) -> list[Step]:
    """One read round trip: the tools the VM needs, where `binary` resolves, then the VM's state."""
    tools = ["sha256sum", *(["qemu-img"] if spec.image is not None else [])]
    return [hoststate.tools_probe(*tools), *probe_steps(spec)]


def after(spec: QemuVmSpec, have: VmHave, res: ScriptResult) -> VmHave:
    """The VM as the ensure script's readback found it; `VmNotRunning` when QEMU exited right after it
    started."""
    found = parse_have(res) if res.ran("vm state") else have
    if not found.ours(pid_file(spec)):
        raise VmNotRunning(f"{spec.host.name}: VM {spec.vm}: QEMU exited right after it started")
    return found


def foreign(spec: QemuVmSpec, have: VmHave) -> tuple[str, str | None] | None:
    if have.present and have.owner is not None and not spec.owns(have.owner):
        return f"VM {spec.vm} ({state_dir(spec)})", have.owner
    return None


KIND: Kind[QemuVmSpec, VmHave] = Kind(
    name="QemuVm",
    spec_model=QemuVmSpec,
    identity=("slice", "host", "vm"),
    needs_bridge=False,
    resource_id=resource_id,
    preflight=preflight,
    parse_have=lambda _spec, res: parse_have(res),
    plan_ensure=plan_ensure,
    plan_delete=plan_delete,
    observe=observe,
    after=after,
    readback=probe_steps,
    foreign=foreign,
    diff_check=running_as_wanted,
)


class QemuVm(HostResource, kind=KIND):
    """A VM's QEMU process on its worker; see `QemuVmSpec` for the inputs."""


from providers.legacy import QemuVmProvider as QemuVmProvider  # noqa: E402  (a class path older state holds)
