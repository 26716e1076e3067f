"""Many slices on one network node: their configs, deploys started together, and what must hold afterwards
(every DHCP namespace served, each slice's objects within its own VLANs, every stack converged)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.integration.slicekit import SliceStack, lab_config, slice_section

PARKING = 4094
INTERNET = 400
DHCP_STATE = "/var/lib/cloudrepo/dhcp"


def ring(first: int, n: int) -> tuple[list[dict[str, Any]], list[list[str]]]:
    """n VMs in a ring over both workers, VM i's eth2 linked to VM i+1's eth1 (n links), every third
    online."""
    vms = [
        {"id": first + i, "worker": f"worker{1 + i % 2}", "dataInterfaces": 2, "internet": i % 3 == 0}
        for i in range(n)
    ]
    links = [[f"{first + i}.eth2", f"{first + (i + 1) % n}.eth1"] for i in range(n)]
    return vms, links


def at_once(
    stacks: list[SliceStack], act: Callable[[SliceStack], Any], offsets: list[float] | None = None
) -> list[Any]:
    """`act(stack)` for every stack on threads of their own, each after its offset in seconds: the
    results (or the exception each raised), in the stacks' order."""
    results: list[Any] = [None] * len(stacks)

    def one(i: int) -> None:
        if offsets:
            time.sleep(offsets[i])
        try:
            results[i] = act(stacks[i])
        except Exception as exc:  # returned to the caller, which says which stack failed
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(stacks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def unserved(network: dict[str, Any]) -> list[str]:
    """DHCP namespaces of the network node's scan that hold no dnsmasq (or more than one)."""
    held: dict[str, int] = {}
    for proc in network["dnsmasq"]:
        held[proc.get("namespace", "")] = held.get(proc.get("namespace", ""), 0) + 1
    names = [ns for ns in network["namespaces"] if ns.startswith("ns-dhcp-vlan")]
    return sorted(f"{ns}: {held.get(ns, 0)} dnsmasq" for ns in names if held.get(ns, 0) != 1)


def isolation_problems(doc: dict[str, Any], outputs: dict[str, dict[str, Any]]) -> list[str]:
    """Every OVS port of the scan `doc` marked by a slice of `outputs` (slice name -> stack outputs) carries
    a VLAN of that slice (its links', 400 or parking; each TAP exactly the one its outputs give), no VLAN
    serves two slices, and no two slices' link subnets (`VLAN % 256`) meet."""
    problems: list[str] = []
    vlans = {name: {int(link["vlan"]) for link in out["links"]} for name, out in outputs.items()}
    owner_of: dict[int, str] = {}
    for name, mine in vlans.items():
        for v in mine:
            if v % 256 in {w % 256 for other, theirs in vlans.items() if other != name for w in theirs}:
                problems.append(f"VLAN {v} of {name} meets another slice's subnet")
            owner_of[v] = name
    taps: dict[str, int] = {}
    for out in outputs.values():
        for vm in out["vms"].values():
            for iface in vm["interfaces"].values():
                vlan = iface.get("vlan")
                taps[iface["tap"]] = int(vlan) if vlan is not None else PARKING
    for host, h in doc["hosts"].items():
        for port, p in h["ovs"].get("br-int", {}).get("ports", {}).items():
            mark = p["external_ids"].get("cloudrepo-slice", "")
            name = mark.split("+", 1)[0]
            if name not in outputs:
                continue
            tag = p["tag"]
            allowed = vlans[name] | {INTERNET, PARKING}
            if tag not in allowed:
                problems.append(f"{host} {port} of {name} on VLAN {tag}, not one of its own")
            if tag in owner_of and owner_of[tag] != name:
                problems.append(f"{host} {port} of {name} on VLAN {tag} of {owner_of[tag]}")
            if port in taps and taps[port] != tag:
                problems.append(f"{host} TAP {port} on VLAN {tag}, its outputs say {taps[port]}")
    return problems


# ---- generated slices and edits -------------------------------------------------------------------------


@dataclass
class GenSlice:
    """A small generated slice: VMs with two data interfaces each, links between free interfaces."""

    name: str
    pool: int
    first_vm: int
    vms: list[dict[str, Any]] = field(default_factory=list)
    links: list[list[str]] = field(default_factory=list)
    edits: list[str] = field(default_factory=list)

    def config(self) -> dict[str, Any]:
        return {**lab_config(), **slice_section(self.pool, self.vms, self.links)}

    def free_ifaces(self) -> list[str]:
        used = {end for link in self.links for end in link}
        return [f"{vm['id']}.eth{i}" for vm in self.vms for i in (1, 2) if f"{vm['id']}.eth{i}" not in used]

    def add_link(self, rng: random.Random) -> bool:
        free = self.free_ifaces()
        pairs = [(a, b) for a in free for b in free if a.split(".")[0] < b.split(".")[0]]
        if not pairs:
            return False
        a, b = rng.choice(pairs)
        self.links.append([a, b])
        self.edits.append(f"link {a} {b}")
        return True

    def edit(self, rng: random.Random) -> None:
        """One random edit: a link removed or added, or a VM's internet toggled."""
        choice = rng.choice(("remove", "add", "internet"))
        if choice == "remove" and len(self.links) > 1:
            gone = self.links.pop(rng.randrange(len(self.links)))
            self.edits.append(f"unlink {gone[0]} {gone[1]}")
        elif choice == "add" and self.add_link(rng):
            pass
        else:
            vm = rng.choice(self.vms)
            vm["internet"] = not vm.get("internet", False)
            self.edits.append(f"internet {vm['id']} {vm['internet']}")


def generate(rng: random.Random, count: int, starts: list[int], first_vm: int) -> list[GenSlice]:
    """`count` slices with pools drawn from `starts` (which must not meet), 2..4 VMs over both workers,
    1..3 links each."""
    pools = rng.sample(starts, count)
    out = []
    for k, pool in enumerate(pools):
        s = GenSlice(f"gen{k + 1}", pool, first_vm + 10 * k)
        for i in range(rng.randint(2, 4)):
            s.vms.append(
                {
                    "id": s.first_vm + i,
                    "worker": rng.choice(("worker1", "worker2")),
                    "dataInterfaces": 2,
                    "internet": rng.random() < 0.4,
                }
            )
        for _ in range(rng.randint(1, 3)):
            s.add_link(rng)
        s.edits.clear()
        out.append(s)
    return out


# ---- the generated run ----------------------------------------------------------------------------------


def link_sets(links: list[list[str]]) -> set[frozenset[str]]:
    return {frozenset(link) for link in links}


def deploy(stack: SliceStack) -> tuple[int, str]:
    result = stack.cli.run("up", "--yes", "--non-interactive", "--skip-preview", check=False)
    return result.returncode, result.stdout + result.stderr


@dataclass
class Life:
    """What happened to one generated slice: refused at its first `up` (and why), or deployed and edited."""

    refused: str | None = None
    failures: list[str] = field(default_factory=list)


def live(stack: SliceStack, s: GenSlice, rng: random.Random, edits: int) -> Life:
    """Deploy, then `edits` random edits each deployed at once; a refusal of the first `up` ends it."""
    code, text = deploy(stack)
    if code != 0:
        return Life(refused=text)
    life = Life()
    for _ in range(edits):
        s.edit(rng)
        stack.write_config(s.config())
        code, text = deploy(stack)
        if code != 0:
            life.failures.append(f"{s.name} after {s.edits}:\n{text}")
    return life


def converged(stack: SliceStack, s: GenSlice) -> list[str]:
    """Where a deployed slice's stack is not what its config says: changes left, or other links."""
    problems = []
    result = stack.cli.run("preview", "--expect-no-changes", "--non-interactive", check=False)
    if result.returncode != 0:
        problems.append(f"{s.name}: preview finds changes after {s.edits}:\n{result.stdout}")
    out = stack.outputs()
    got = link_sets([link["endpoints"] for link in out["links"]])
    if got != link_sets(s.links):
        problems.append(
            f"{s.name}: links {sorted(map(sorted, got))} != config {sorted(map(sorted, s.links))}"
        )
    if any(not s.pool <= int(link["vlan"]) < s.pool + 20 for link in out["links"]):
        problems.append(f"{s.name}: a link VLAN outside its pool {s.pool}: {out['links']}")
    return problems
