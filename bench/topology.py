"""The benchmark slices: a ring of N VMs and N links, VMs alternating between two workers, a third online;
or N pairs of VMs (2N VMs, one data interface each) spread over more workers.

The same description gives the stack config (for `pulumi up`) and the host objects the baselines create
with the seed's commands, so both sides build the same TAPs, gateways, DHCP namespaces and NAT.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.common import NETWORK_HOST, lab_dir, ssh_port

ROOT = Path(__file__).resolve().parent.parent
INTERNET_VLAN = 400
PARKING_VLAN = 4094
BRIDGE = "br-int"


@dataclass(frozen=True)
class Tap:
    worker: str
    name: str
    vlan: int


@dataclass(frozen=True)
class SliceSpec:
    """One benchmark slice, pool `pool_start`..+19: `links` links over `links` VMs (ids `first_vm`..) in a
    ring, or with `pairs` over 2 x `links` VMs, VM 2i's eth1 linked to VM 2i+1's."""

    name: str
    links: int
    pool_start: int
    first_vm: int
    workers: tuple[str, ...] = ("worker1", "worker2")
    pairs: bool = False
    vm_ids: list[int] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        if not 2 <= self.links <= 20:
            raise ValueError("a slice holds 2..20 links")
        count = self.links * (2 if self.pairs else 1)
        self.vm_ids.extend(range(self.first_vm, self.first_vm + count))

    @property
    def data_ifaces(self) -> tuple[str, ...]:
        return ("eth1",) if self.pairs else ("eth1", "eth2")

    def internet(self, i: int) -> bool:
        return i % 3 == 0

    def vms(self) -> list[dict[str, Any]]:
        return [
            {
                "id": vm,
                "worker": self.workers[i % len(self.workers)],
                "dataInterfaces": len(self.data_ifaces),
                "internet": self.internet(i),
            }
            for i, vm in enumerate(self.vm_ids)
        ]

    def link_ends(self) -> list[tuple[tuple[int, str], tuple[int, str]]]:
        """Ring: link i joins VM i's eth2 to VM i+1's eth1. Pairs: link i joins VM 2i's eth1 to VM 2i+1's.
        Consecutive VMs sit on different workers: every link crosses workers."""
        v = self.vm_ids
        if self.pairs:
            return [((v[2 * i], "eth1"), (v[2 * i + 1], "eth1")) for i in range(self.links)]
        return [((v[i], "eth2"), (v[(i + 1) % len(v)], "eth1")) for i in range(len(v))]

    def link_pairs(self) -> list[list[str]]:
        return [[f"{a}.{ai}", f"{b}.{bi}"] for (a, ai), (b, bi) in self.link_ends()]

    def link_vlans(self) -> list[int]:
        """A fresh stack gives each link the lowest free VLAN, in config order."""
        return [self.pool_start + i for i in range(self.links)]

    def taps(self) -> list[Tap]:
        """Every VM interface's TAP and its tag (eth0: VLAN 400 when online, else parked)."""
        vlan_of: dict[tuple[int, str], int] = {}
        for (a, b), vlan in zip(self.link_ends(), self.link_vlans(), strict=True):
            vlan_of[a] = vlan_of[b] = vlan
        out = []
        for i, vm in enumerate(self.vm_ids):
            worker = self.workers[i % len(self.workers)]
            eth0 = INTERNET_VLAN if self.internet(i) else PARKING_VLAN
            out.append(Tap(worker, f"tap_{vm}_eth0", eth0))
            for iface in self.data_ifaces:
                out.append(Tap(worker, f"tap_{vm}_{iface}", vlan_of[(vm, iface)]))
        return out

    @property
    def has_internet(self) -> bool:
        return any(self.internet(i) for i in range(len(self.vm_ids)))

    def stack_config(self) -> dict[str, Any]:
        """The `config:` map of `Pulumi.<stack>.yaml` for the testbed."""
        lab = lab_dir()
        return {
            "cloudrepo:networkNode": {"host": "127.0.0.1", "port": ssh_port(NETWORK_HOST), "uplink": "ens3"},
            "cloudrepo:workers": {w: {"host": "127.0.0.1", "port": ssh_port(w)} for w in self.workers},
            "cloudrepo:ssh": {
                "user": "root",
                "privateKeyPath": str(lab / "id_ed25519"),
                "knownHostsPath": str(lab / "known_hosts"),
                "sudo": True,
            },
            "cloudrepo:slice": {
                "name": self.name,
                "vlanPool": {"start": self.pool_start},
                "vms": self.vms(),
                "links": self.link_pairs(),
            },
        }


def from_fields(fields: dict[str, Any]) -> SliceSpec:
    """A `SliceSpec` from its fields as JSON gives them back (lists for tuples)."""
    values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
    return SliceSpec(**values)


def expected_outputs_match(spec: SliceSpec, outputs: dict[str, Any]) -> list[str]:
    """Differences between what the baselines will build and what `pulumi up` built (empty: same objects)."""
    want = {(t.name, t.vlan) for t in spec.taps()}
    got = set()
    for vm in outputs.get("vms", {}).values():
        for iface in vm.get("interfaces", {}).values():
            vlan = iface.get("vlan")
            got.add((iface["tap"], int(vlan) if vlan is not None else PARKING_VLAN))
    problems = [f"baseline TAP {n} tag {v} not in the stack" for n, v in sorted(want - got)]
    problems += [f"stack TAP {n} tag {v} not in the baseline" for n, v in sorted(got - want)]
    links = sorted(int(link["vlan"]) for link in outputs.get("links", []))
    if links != sorted(spec.link_vlans()):
        problems.append(f"link VLANs {links} != {spec.link_vlans()}")
    return problems
