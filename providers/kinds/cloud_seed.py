"""CloudSeed: a launched VM's NoCloud seed volume on its worker, and the guest's SSH host key beside it.

In the VM's directory (`naming.vm_dir`, shared with its `QemuVm`, the same owner mark): `hostkey` and
`hostkey.pub`, the guest's ed25519 host key, made there by `ssh-keygen` when absent and kept (the guest's
identity for as long as the VM's directory lives: its `QemuVm`'s delete removes it); and
`seed-<hash>.img` (`naming.seed_path`), the `cidata` volume made by `cloud-localds` from the three documents
of the spec (`components.cloudinit`; they reach the host inside the script, as here-documents, never on a
command line) with the host key's `ssh_keys` block appended to user-data (`HOST_KEY_BLOCK`, the one
definition of that block). The private half never leaves the worker: it is in no input, output, log or
argv; only the public half is read back (`observed.hostKey`). Every file is 0600 (umask 077 and the
steps' own `chmod`), the directory 0700; a new seed replaces the older ones.

The seed's name carries its documents' hash, and so does the `QemuVm`'s argv (`QemuVmSpec.seed`): a changed
seed is a new volume beside the old one, and the VM that depends on it restarts on it. The instance-id in
meta-data is derived from the documents (`components.cloudinit`), so the same config gives the same seed
and the same instance (the host key, made once, changes nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from providers import hoststate
from providers.kind import Kind
from providers.pipeline import HostResource
from transport.script import ScriptResult, Step, run, sh
from vocabulary.errors import OwnershipConflict
from vocabulary.naming import VMS_DIR, host_key_path, seed_path, vm_dir
from vocabulary.specs import CloudSeedSpec

TOOLS = ("cloud-localds", "ssh-keygen")
STATE = "seed state"
STAGE = ".seed"
"""The staging directory in the VM's directory: the documents while the volume is made."""
DOCUMENTS = (("meta-data", "meta_data"), ("user-data", "user_data"), ("network-config", "network_config"))
"""The seed's files and the spec fields that hold them."""


def comment(spec: CloudSeedSpec) -> str:
    """The host key's comment (`ssh-ed25519 AAAA... cloudrepo-vm1002`)."""
    return f"cloudrepo-vm{spec.vm}"


def resource_id(spec: CloudSeedSpec) -> str:
    return f"{spec.host.name}/seed/{spec.vm}"


_PROBE = r"""d=$1
[ -d "$d" ] || { echo absent; exit 0; }
echo present
printf 'owner=%s\n' "$(cat "$d/owner" 2>/dev/null)"
if [ -f "$d/hostkey" ] && [ -f "$d/hostkey.pub" ]; then
  printf 'hostkey=%s\n' "$(head -n 1 "$d/hostkey.pub")"
fi
for f in "$d"/seed-*.img; do
  [ -f "$f" ] && printf 'seed=%s\n' "${f##*/}"
done
exit 0
"""

_OWNER = r"""printf '%s\n' "$2" >"$1/owner.tmp" && mv -f "$1/owner.tmp" "$1/owner" """

_KEYGEN = r"""k=$1
if [ ! -f "$k" ] || [ ! -f "$k.pub" ]; then
  rm -f "$k" "$k.pub"
  ssh-keygen -q -t ed25519 -N '' -C "$2" -f "$k" >/dev/null || exit
fi
chmod 0600 "$k" "$k.pub"
"""
"""The host key, made only when absent (`-N ''`: the guest's sshd reads it unattended)."""

_STAGE = r"""rm -rf "$1" && mkdir -m 0700 "$1" """

_WRITE = r"""cat >"$1" && chmod 0600 "$1" """

HOST_KEY_BLOCK = r"""k=$1; u=$2
{
  printf 'ssh_keys:\n  ed25519_private: |\n'
  sed 's/^/    /' "$k"
  printf '  ed25519_public: %s\n' "$(head -n 1 "$k.pub")"
} >>"$u"
"""
"""The one definition of the guest's host key in user-data: appended to our `#cloud-config` (which never
has an `ssh_keys` key: `components.cloudinit` refuses it in `userData`), read from the key files: `$1` the
private key file (`.pub` beside it), `$2` the user-data file."""

_BUILD = r"""d=$1; s=$2; out=$3; block=$4
sh -c "$block" sh "$d/hostkey" "$s/user-data" || exit
cloud-localds --filesystem=iso9660 --disk-format=raw --network-config="$s/network-config" \
  "$s/seed.img" "$s/user-data" "$s/meta-data" || exit
chmod 0600 "$s/seed.img" && mv -f "$s/seed.img" "$out" || exit
rm -rf "$s"
for f in "$d"/seed-*.img; do
  [ "$f" = "$out" ] || rm -f "$f"
done
"""
"""Append the host key to the staged user-data, make the volume (ISO 9660, volume id `cidata`), put it in
place atomically, and remove the staging directory and older seeds. `$4` is `HOST_KEY_BLOCK`."""

_REMOVE = r"""d=$1
rm -rf "$d/.seed" "$d"/seed-*.img
for f in "$d"/*; do
  case ${f##*/} in owner|hostkey|hostkey.pub) ;; *) exit 0 ;; esac
done
rm -rf "$d"
"""
"""Remove the seeds; the directory too when it holds nothing else of the VM (no QEMU state): the host key
then goes with it."""


@dataclass(frozen=True)
class SeedHave:
    present: bool
    """The VM's directory exists."""
    owner: str | None
    host_key: str | None
    """The public host key (first line of `hostkey.pub`), when both halves are there."""
    seeds: tuple[str, ...] = ()
    """The seed volumes in the directory (file names)."""

    @property
    def gone(self) -> bool:
        return not self.present


def probe_steps(spec: CloudSeedSpec) -> list[Step]:
    return [sh(STATE, _PROBE, vm_dir(spec.vm), kind="probe")]


def preflight(spec: CloudSeedSpec) -> list[Step]:
    """One read round trip: `cloud-localds` and `ssh-keygen` (else "missing command(s): ..."), then the
    VM's directory."""
    return [hoststate.tools_probe(*TOOLS), *probe_steps(spec)]


def parse_have(_spec: CloudSeedSpec, res: ScriptResult) -> SeedHave:
    lines = res.out(STATE).split("\n")
    fields: dict[str, str] = {}
    seeds: list[str] = []
    for line in lines[1:]:
        key, _, value = line.partition("=")
        if key == "seed" and value:
            seeds.append(value)
        else:
            fields[key] = value
    return SeedHave(
        present=bool(lines) and lines[0] == "present",
        owner=fields.get("owner") or None,
        host_key=fields.get("hostkey") or None,
        seeds=tuple(sorted(seeds)),
    )


def seed_name(spec: CloudSeedSpec) -> str:
    return seed_path(spec.vm, spec.sha256).rsplit("/", 1)[1]


def build_steps(spec: CloudSeedSpec) -> list[Step]:
    """Stage the documents (as here-documents: in no argv), then `_BUILD`."""
    d = vm_dir(spec.vm)
    stage = f"{d}/{STAGE}"
    steps = [run("seed stage", "sh", "-c", _STAGE, "sh", stage)]
    for name, field_name in DOCUMENTS:
        steps.append(sh(f"seed {name}", _WRITE, f"{stage}/{name}", stdin=getattr(spec, field_name)))
    steps.append(sh("seed build", _BUILD, d, stage, seed_path(spec.vm, spec.sha256), HOST_KEY_BLOCK))
    return steps


def check_ownership(spec: CloudSeedSpec, have: SeedHave) -> None:
    if have.present and have.owner is not None and not spec.adopts(have.owner):
        raise OwnershipConflict(spec.host.name, f"VM {spec.vm} ({vm_dir(spec.vm)})", spec.owner, have.owner)


def plan_ensure(spec: CloudSeedSpec, have: SeedHave) -> list[Step]:
    """The directory and its mark, the host key when absent, the seed when its volume is not there (older
    ones removed); nothing when all is in place. Refuses another slice's VM directory."""
    check_ownership(spec, have)
    d = vm_dir(spec.vm)
    steps: list[Step] = []
    if not have.present or have.owner != spec.owner:
        steps += [
            run("vm dir", "install", "-d", "-m", "0700", VMS_DIR, d),
            sh("mark vm", _OWNER, d, spec.owner),
        ]
    fresh_key = have.host_key is None
    if fresh_key:
        steps.append(sh("host key", _KEYGEN, host_key_path(spec.vm), comment(spec)))
    if fresh_key or seed_name(spec) not in have.seeds:
        steps += build_steps(spec)
    else:
        for other in have.seeds:
            if other != seed_name(spec):
                steps.append(run("old seed", "rm", "-f", f"{d}/{other}"))
    return steps


def plan_delete(spec: CloudSeedSpec, have: SeedHave) -> list[Step]:
    """Remove the seeds (and the directory when nothing of QEMU is in it); nothing when it is gone or
    another slice's."""
    if not have.present or (have.owner is not None and not spec.owns(have.owner)):
        return []
    return [sh("remove seed", _REMOVE, vm_dir(spec.vm))]


def observe(spec: CloudSeedSpec, have: SeedHave) -> tuple[dict[str, Any], list[str]]:
    observed = {
        "hostKey": have.host_key,
        "seed": seed_path(spec.vm, spec.sha256) if seed_name(spec) in have.seeds else None,
        "owner": have.owner,
    }
    drift: list[str] = []
    if seed_name(spec) not in have.seeds:
        drift.append("seed volume missing")
    if have.host_key is None:
        drift.append("host key missing")
    return observed, drift


def after(spec: CloudSeedSpec, have: SeedHave, res: ScriptResult) -> SeedHave:
    return parse_have(spec, res) if res.ran(STATE) else have


def foreign(spec: CloudSeedSpec, have: SeedHave) -> tuple[str, str | None] | None:
    if have.present and have.owner is not None and not spec.owns(have.owner):
        return f"VM {spec.vm} ({vm_dir(spec.vm)})", have.owner
    return None


KIND: Kind[CloudSeedSpec, SeedHave] = Kind(
    name="CloudSeed",
    spec_model=CloudSeedSpec,
    identity=("slice", "host", "vm"),
    needs_bridge=False,
    resource_id=resource_id,
    preflight=preflight,
    parse_have=parse_have,
    plan_ensure=plan_ensure,
    plan_delete=plan_delete,
    observe=observe,
    after=after,
    readback=probe_steps,
    foreign=foreign,
    secret_inputs=("metaData", "userData", "networkConfig"),
)


class CloudSeed(HostResource, kind=KIND):
    """A launched VM's NoCloud seed and its guest's host key; see `CloudSeedSpec` for the inputs."""
