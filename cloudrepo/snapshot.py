"""`cloudrepo snapshot`, the pure part: snapshot names, the manifest, the worker's programs and the table.

A snapshot of a slice is its stack config file as it was (secrets stay encrypted, as the file holds them)
with a manifest, kept in the checkout under `.cloudrepo/<stack>/snapshots/<snap>/` (0700, files 0600),
and, on each worker, a copy of every launched VM's qcow2 overlay in `naming.snapshot_dir(mark, snap)`
(root's, 0600): the overlay is copied with `cp --reflink=auto` while QEMU is paused through its QMP
monitor (`stop` flushes the disks first; `cont` after), so the copy is the disk at one instant. A VM
booted from a kernel and initrd alone has no disk: its snapshot is the config only.

Every worker program checks the VM directory's owner file against the slice's owner mark
(`<slice>+<uid>`) and refuses another slice's VM; snapshot directories are named by that mark.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from vocabulary import naming
from vocabulary.shown import shown

SNAP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
"""A snapshot's name: 1..64 letters, digits, '_', '.', '-', starting with a letter or digit (a path
component on the worker and in the checkout, never '.', '..' or an option look-alike)."""
MANIFEST = "manifest.json"
CONFIG = "stack.yaml"
NO_MONITOR, NOT_OURS, MISSING = 6, 7, 8
"""The worker programs' own exit statuses."""


def snap_name(text: str) -> str:
    """argparse type of SNAP (`SNAP_NAME`)."""
    if not SNAP_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{shown(text)} is not a snapshot name: 1..64 letters, digits, '_', '.' and '-', starting with "
            "a letter or digit"
        )
    return text


@dataclass(frozen=True)
class VmSnap:
    vm: int
    worker: str
    disk: bool
    """False: the VM boots a kernel and initrd only (nothing to copy)."""
    size: int = 0
    """Bytes of the disk copy on the worker."""
    files: dict[str, str] = field(default_factory=dict)
    """Its boot files' sha256 (`kernel`, `initrd`, `image`): restore refuses when they changed."""


@dataclass(frozen=True)
class Manifest:
    name: str
    stack: str
    mark: str
    """The slice's owner mark at save (`<slice>+<uid>`)."""
    time: str
    vms: tuple[VmSnap, ...]

    @property
    def size(self) -> int:
        return sum(v.size for v in self.vms)

    def workers(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for v in self.vms:
            if v.disk:
                out.setdefault(v.worker, []).append(v.vm)
        return out

    def dump(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"


def load_manifest(text: str) -> Manifest:
    """A manifest back from its JSON; `ValueError` when it is not one."""
    try:
        raw = json.loads(text)
        vms = tuple(
            VmSnap(int(v["vm"]), str(v["worker"]), bool(v["disk"]), int(v["size"]), dict(v["files"]))
            for v in raw["vms"]
        )
        manifest = Manifest(str(raw["name"]), str(raw["stack"]), str(raw["mark"]), str(raw["time"]), vms)
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"not a snapshot manifest ({type(exc).__name__}: {exc})") from None
    if not SNAP_NAME.fullmatch(manifest.name) or not mark_ok(manifest.mark):
        raise ValueError(
            f"not a snapshot manifest (name {shown(manifest.name)}, mark {shown(manifest.mark)})"
        )
    return manifest


def mark_ok(mark: str) -> bool:
    """An owner mark fit for a path component: a slice name and a uid."""
    slice_name, uid = naming.mark_slice(mark), naming.mark_uid(mark)
    return naming.SAFE_SLICE.fullmatch(slice_name) is not None and (
        uid is None or naming.SAFE_UID.fullmatch(uid) is not None
    )


def launched(outputs: Mapping[str, Any]) -> list[tuple[int, str]]:
    """The launched VMs of a deployed slice and their workers, from its outputs (those with a console)."""
    found = []
    for key, info in (outputs.get("vms") or {}).items():
        ok = isinstance(info, Mapping) and info.get("console") and isinstance(info.get("worker"), str)
        if ok and str(key).isdigit():
            found.append((int(key), str(info["worker"])))
    return sorted(found)


def identity_uid(resources: Sequence[Mapping[str, Any]], identity_name: str) -> str | None:
    """The slice's uid from its state's resources (the `SliceIdentity` output), None when not there."""
    for r in resources:
        if str(r.get("urn", "")).endswith(f"::{identity_name}"):
            uid = (r.get("outputs") or {}).get("uid")
            if isinstance(uid, str) and naming.SAFE_UID.fullmatch(uid):
                return uid
    return None


_RUNNING = r"""pf=$1
pid=$(cat "$pf" 2>/dev/null) || return 1
case $pid in ''|*[!0-9]*) return 1 ;; esac
tr '\000' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF -- "$pf"
"""

_QMP = r"""sock=$1; cmd=$2; out=$(mktemp) || return 1
{ printf '%s\n' '{"execute":"qmp_capabilities"}' "{\"execute\":\"$cmd\"}"
  i=0
  while [ "$i" -lt 300 ] && [ "$(grep -c '"return"' "$out")" -lt 2 ]; do sleep 0.05; i=$((i + 1)); done
} | socat - "UNIX-CONNECT:$sock" >"$out" 2>&1
n=$(grep -c '"return"' "$out"); r=0
[ "$n" -ge 2 ] || { echo "QMP $cmd on $sock failed: $(tr -d '\r' <"$out" | tail -c 300)" >&2; r=1; }
rm -f "$out"
return "$r"
"""

_FUNCS = f"running() {{\n{_RUNNING}}}\nqmp() {{\n{_QMP}}}\n"

_OWNED = r"""owned() {
  o=$(cat "$VMS/$1/owner" 2>/dev/null)
  [ "$o" = "$mark" ] && return 0
  echo "vm $1: $VMS/$1 is not this slice's (owner: ${o:-none})" >&2
  exit 7
}
"""

_SAVE = r"""umask 077
mark=$1; snap=$2; VMS=$3; root=$4; shift 4
d="$root/$mark/$snap"
install -d -m 0700 "$root" "$root/$mark" || exit 1
[ ! -e "$d" ] || { echo "$d exists" >&2; exit 1; }
rm -rf "$d.part"; mkdir -m 0700 "$d.part" || exit 1
paused=
trap 'rm -rf "$d.part"; [ -z "$paused" ] || qmp "$paused" cont' EXIT
trap 'exit 1' HUP INT TERM
for vm; do
  owned "$vm"
  v=$VMS/$vm
  if [ ! -f "$v/disk.qcow2" ]; then printf 'vm=%s size=none\n' "$vm"; continue; fi
  if running "$v/qemu.pid"; then
    [ -S "$v/qmp.sock" ] || { echo "vm $vm" >&2; exit 6; }
    paused=$v/qmp.sock
    qmp "$paused" stop || exit 1
  fi
  cp --reflink=auto --sparse=always "$v/disk.qcow2" "$d.part/vm$vm.qcow2"; rc=$?
  if [ -n "$paused" ]; then p=$paused; paused=; qmp "$p" cont || rc=1; fi
  [ "$rc" = 0 ] || exit 1
  cp "$v/disk.base" "$d.part/vm$vm.base" 2>/dev/null
  chmod 0600 "$d.part/vm$vm.qcow2"
  printf 'vm=%s size=%s\n' "$vm" "$(stat -c %s "$d.part/vm$vm.qcow2")"
done
printf '%s\n' "$mark" >"$d.part/owner" && mv "$d.part" "$d"
"""

_RUNNING_VMS = r"""mark=$1; VMS=$2; shift 2
for vm; do
  o=$(cat "$VMS/$vm/owner" 2>/dev/null)
  [ -z "$o" ] || [ "$o" = "$mark" ] || { echo "vm $vm: $VMS/$vm is not this slice's (owner: $o)" >&2
    exit 7; }
  ! running "$VMS/$vm/qemu.pid" || printf 'running=%s\n' "$vm"
done
exit 0
"""

_RESTORE = r"""umask 077
mark=$1; snap=$2; VMS=$3; root=$4; wait=$5; shift 5
d="$root/$mark/$snap"
[ "$(cat "$d/owner" 2>/dev/null)" = "$mark" ] || { echo "$d" >&2; exit 8; }
for vm; do [ -f "$d/vm$vm.qcow2" ] || { echo "$d/vm$vm.qcow2" >&2; exit 8; }; done
for vm; do
  v=$VMS/$vm
  o=$(cat "$v/owner" 2>/dev/null)
  [ -z "$o" ] || [ "$o" = "$mark" ] || { echo "vm $vm: $v is not this slice's (owner: $o)" >&2; exit 7; }
done
for vm; do
  v=$VMS/$vm
  install -d -m 0700 "$VMS" "$v" || exit 1
  [ -f "$v/owner" ] || printf '%s\n' "$mark" >"$v/owner" || exit 1
  if running "$v/qemu.pid"; then
    pid=$(cat "$v/qemu.pid"); kill -TERM "$pid" 2>/dev/null; i=0
    while running "$v/qemu.pid" && [ "$i" -lt $((wait * 10)) ]; do sleep 0.1; i=$((i + 1)); done
    ! running "$v/qemu.pid" || { kill -KILL "$pid" 2>/dev/null; sleep 0.2; }
    ! running "$v/qemu.pid" || { echo "vm $vm: QEMU (pid $pid) did not stop" >&2; exit 1; }
  fi
  cp --reflink=auto --sparse=always "$d/vm$vm.qcow2" "$v/disk.qcow2.new" || exit 1
  chmod 0600 "$v/disk.qcow2.new" && mv -f "$v/disk.qcow2.new" "$v/disk.qcow2" || exit 1
  [ ! -f "$d/vm$vm.base" ] || cp "$d/vm$vm.base" "$v/disk.base" || exit 1
  printf 'restored=%s\n' "$vm"
done
"""

_DELETE = r"""mark=$1; root=$2; shift 2
for snap; do
  d="$root/$mark/$snap"
  [ -e "$d" ] || [ -e "$d.part" ] || continue
  o=$(cat "$d/owner" 2>/dev/null)
  [ ! -e "$d/owner" ] || [ "$o" = "$mark" ] || { echo "$d is not this slice's (owner: $o)" >&2; exit 7; }
  rm -rf "$d" "$d.part" || exit 1
done
rmdir "$root/$mark" 2>/dev/null
exit 0
"""


def _argv(body: str, *args: str) -> list[str]:
    return ["sh", "-c", _FUNCS + _OWNED + body, "sh", *args]


def save_argv(mark: str, snap: str, vms: Sequence[int]) -> list[str]:
    """Copy each VM's overlay into the snapshot's directory on its worker, pausing a running VM through
    its monitor while its disk is copied (resumed on every way out, a failed copy or a signal too);
    prints `vm=<id> size=<bytes|none>` per VM. Exit `NO_MONITOR` (stderr: the VM) for a running VM that
    has no monitor, `NOT_OURS` for another slice's VM."""
    _check(mark, snap)
    return _argv(_SAVE, mark, snap, naming.VMS_DIR, naming.SNAPSHOTS_DIR, *map(str, vms))


def running_argv(mark: str, vms: Sequence[int]) -> list[str]:
    """Which of `vms` run on the worker (`running=<id>` lines); `NOT_OURS` for another slice's VM."""
    _check(mark, "x")
    return _argv(_RUNNING_VMS, mark, naming.VMS_DIR, *map(str, vms))


def restore_argv(mark: str, snap: str, vms: Sequence[int], stop_wait: int) -> list[str]:
    """Stop each VM by its pid file (SIGTERM, SIGKILL after `stop_wait` s) and put the snapshot's copy in
    place of its overlay; the next `up` starts it on it. Exit `MISSING` (stderr: the path) before any
    change when the snapshot's files are not all there, `NOT_OURS` when a VM is another slice's."""
    _check(mark, snap)
    return _argv(_RESTORE, mark, snap, naming.VMS_DIR, naming.SNAPSHOTS_DIR, str(stop_wait), *map(str, vms))


def delete_argv(mark: str, snaps: Sequence[str]) -> list[str]:
    """Remove the snapshots' directories of the slice (those gone are fine); `NOT_OURS` for one whose
    owner file names another mark."""
    for snap in snaps:
        _check(mark, snap)
    return _argv(_DELETE, mark, naming.SNAPSHOTS_DIR, *snaps)


def _check(mark: str, snap: str) -> None:
    if not mark_ok(mark) or not SNAP_NAME.fullmatch(snap):
        raise ValueError(f"not a snapshot path: mark {shown(mark)}, snapshot {shown(snap)}")


def parse_lines(text: str, key: str) -> dict[int, str]:
    """`key=<vm> ...` lines of a worker program: vm -> the rest of its line."""
    out: dict[int, str] = {}
    for line in text.splitlines():
        head, _, rest = line.partition(" ")
        k, _, vm = head.partition("=")
        if k == key and vm.isdigit():
            out[int(vm)] = rest
    return out


def human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def table(manifests: Sequence[Manifest]) -> str:
    """`snapshot list`: name, time, VMs (disk or config only), size of the disk copies."""
    if not manifests:
        return "(no snapshots)"
    rows = [("SNAPSHOT", "TIME", "VMS", "SIZE")]
    for m in sorted(manifests, key=lambda m: m.time):
        vms = ", ".join(f"{v.vm}" + ("" if v.disk else " (config)") for v in m.vms) or "-"
        rows.append((m.name, m.time, vms, human(m.size)))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)) + "  " + r[3] for r in rows
    )
