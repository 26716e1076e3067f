"""Names of the kernel and OVS objects the providers manage (the seed's names, checked against IFNAMSIZ)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from vocabulary.shown import shown

NAMESPACE = "cloudrepo"
"""The namespace of every stack config key (`cloudrepo:slice`)."""

IFNAMSIZ_MAX = 15
"""Longest Linux interface name (IFNAMSIZ is 16 including the trailing NUL)."""

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")
"""An interface name: 1..15 characters, no '/', whitespace, ':' or shell metacharacters."""

SAFE_NETNS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
"""A network-namespace name (a file under /run/netns, so not limited to 15 characters)."""

SAFE_SLICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
"""A slice name: used in file names under /var/lib/cloudrepo and in OVS external_ids."""

SAFE_STACK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./-]{0,199}$")
"""A stack's name as a claim records it (`<project>/<stack>`)."""

SAFE_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
"""A DHCP reservation host name (one DNS label)."""

SHARED_OWNER = "shared"
"""The owner mark of the VLAN 400 objects every slice on a network node shares."""

OWNER_KEY = "cloudrepo-slice"
"""The OVS external_id that carries an object's owner mark (`owner_mark`)."""
UID_SEPARATOR = "+"
"""Between the slice name and its uid in an owner mark (never in a slice name)."""
SAFE_UID = re.compile(r"^[0-9a-f]{32}$")
"""A slice uid: 128 random bits in hex, made once per stack (`providers.identity`)."""

STATE_ROOT = "/var/lib/cloudrepo"
IMAGES_DIR = f"{STATE_ROOT}/images"
"""A worker's boot files, each named by its sha256 (shared by slices)."""
VMS_DIR = f"{STATE_ROOT}/vms"
"""One directory per launched VM (`<vm>/`: owner, pid file, console socket, overlay)."""
LOCK_FILE = f"{STATE_ROOT}/lock"
"""The hosts' lock (`flock`); a locked script notes its slice in `lock.holder` beside it once it holds it,
so a lock wait that times out names the slice that last held it."""
LOCK_TIMEOUT_STATUS = 75
"""flock's exit status when the wait times out (`flock -E`); no script of ours exits with it."""


def tap_name(vm: int, iface: str) -> str:
    """The seed's TAP name for a VM interface (validate it with `ifname_problem`)."""
    return f"tap_{vm}_{iface}"


def vm_dir(vm: int) -> str:
    """A launched VM's directory on its worker (pid file, overlay, console socket)."""
    return f"{VMS_DIR}/{vm}"


def console_path(vm: int) -> str:
    """A launched VM's serial console socket on its worker."""
    return f"{vm_dir(vm)}/console.sock"


def seed_path(vm: int, sha256: str) -> str:
    """A launched VM's NoCloud seed volume on its worker, named by its documents' hash (a new seed is a
    new path, so QEMU's argv, and with it the running VM, follows it)."""
    return f"{vm_dir(vm)}/seed-{sha256[:16]}.img"


def host_key_path(vm: int) -> str:
    """The guest's SSH host key (ed25519) on its worker, made there; `.pub` beside it."""
    return f"{vm_dir(vm)}/hostkey"


def console_log_path(vm: int) -> str:
    """What a launched VM printed on its serial console since QEMU last started (QEMU's chardev
    `logfile`); the boot before is kept as `console.log.1`."""
    return f"{vm_dir(vm)}/console.log"


def monitor_path(vm: int) -> str:
    """A launched VM's QMP monitor socket on its worker (root's, 0600): snapshots pause the VM through
    it while its disk is copied."""
    return f"{vm_dir(vm)}/qmp.sock"


SNAPSHOTS_DIR = f"{STATE_ROOT}/snapshots"
"""Slice snapshots' disk copies: `<owner mark>/<snapshot>/vm<id>.qcow2` (beside `vms/`, root's, 0600)."""


def snapshot_dir(mark: str, snap: str) -> str:
    """One snapshot's directory on a worker: under its slice's owner mark (name and uid), so no snapshot
    of another slice, or of another deployment of a slice of the same name, is ever its."""
    return f"{SNAPSHOTS_DIR}/{mark}/{snap}"


def console_lock_path(vm: int) -> str:
    """The lock (`flock`) of a VM's console: one client at a time; the holder notes itself in it."""
    return console_lock_of(console_path(vm))


def console_lock_of(socket_path: str) -> str:
    """The console lock beside a console socket (the testbed reaches sockets by other paths)."""
    return f"{socket_path}.lock"


def console_holder(who: str, since: datetime) -> str:
    """What a console's holder writes into its lock: `<who> since <UTC time>` ("in use by ..." shows it)."""
    return f"{who} since {since.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def gateway_port(vlan: int) -> str:
    """The gateway's internal OVS port on the network node."""
    return f"gw_vlan{vlan}"


def dhcp_port(vlan: int) -> str:
    """The DHCP server's internal OVS port (moved into the DHCP namespace)."""
    return f"dhcp_v{vlan}"


def dhcp_namespace(vlan: int) -> str:
    """The network namespace that runs the VLAN's dnsmasq."""
    return f"ns-dhcp-vlan{vlan}"


def dhcp_dir(vlan: int) -> str:
    """The VLAN's DHCP state directory on the network node."""
    return f"{STATE_ROOT}/dhcp/vlan{vlan}"


def shared_dir(obj: str) -> str:
    """The state directory of a shared object."""
    return f"{STATE_ROOT}/shared/{obj}"


def shared_users_dir(obj: str) -> str:
    """The users registry of a shared object (one empty file per slice using it)."""
    return f"{shared_dir(obj)}/users"


POOLS_DIR = f"{STATE_ROOT}/pools"


def pool_file(slice_name: str, start: int) -> str:
    """The file that records one VLAN-pool claim of a slice on a network node (`<slice>@<start>`; a slice
    holds two while its pool moves)."""
    return f"{POOLS_DIR}/{slice_name}@{start}"


CLAIMS_DIR = f"{STATE_ROOT}/claims"


def claim_file(slice_name: str, vm: int) -> str:
    """The file that records one VM's share of a worker (`<slice>@<vm>`: vCPUs, MiB, uid, stack)."""
    return f"{CLAIMS_DIR}/{slice_name}@{vm}"


def owner_mark(slice_name: str, uid: str | None) -> str:
    """What marks an object as one slice's: `<slice>+<uid>`; the bare name is the mark of a slice deployed
    before slices had uids (`uid` None)."""
    return f"{slice_name}{UID_SEPARATOR}{uid}" if uid else slice_name


def mark_slice(mark: str) -> str:
    """The slice name of an owner mark (the mark itself for a bare-name one)."""
    return mark.partition(UID_SEPARATOR)[0]


def mark_uid(mark: str) -> str | None:
    """The uid of an owner mark; None for a bare-name mark (made before slices had uids)."""
    return mark.partition(UID_SEPARATOR)[2] or None


def describe_mark(mark: str) -> str:
    """An owner mark for a message: `slice 'demo' (uid 0f3a...)`, or `slice 'demo'` for a bare name."""
    uid = mark_uid(mark)
    return f"slice {mark_slice(mark)!r}" + (f" (uid {uid})" if uid else "")


def owns(mark: str | None, slice_name: str, uid: str | None) -> bool:
    """Whether an object marked `mark` is this slice's to change or remove: exactly its own mark."""
    return mark == owner_mark(slice_name, uid)


def adoptable(mark: str | None, slice_name: str, uid: str | None) -> bool:
    """Whether a create or update may take the object (and rewrite its mark): its own mark, or the bare
    name of the slice, a mark made before slices had uids (the slice's claim on the network node, which
    every other resource waits for, is then this uid's)."""
    return owns(mark, slice_name, uid) or mark == slice_name


def ifname_problem(name: str) -> str | None:
    """Why `name` cannot be a Linux interface name, or None when it can."""
    if len(name) > IFNAMSIZ_MAX:
        return (
            f"interface name {shown(name)} is {len(name)} characters, over the Linux limit of {IFNAMSIZ_MAX}"
        )
    if not SAFE_NAME.fullmatch(name):
        return (
            f"interface name {shown(name)} must start with a letter or digit and contain only "
            "letters, digits, '_', '.' and '-'"
        )
    return None


def slice_problem(name: str) -> str | None:
    """Why `name` cannot be a slice name, or None when it can."""
    if not SAFE_SLICE.fullmatch(name):
        return (
            f"slice name {shown(name)} must be 1..63 characters, start with a letter or digit and contain "
            "only letters, digits, '_', '.' and '-'"
        )
    if name == SHARED_OWNER:
        return f"slice name {name!r} is reserved for the objects slices share"
    return None
