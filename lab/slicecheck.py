"""Prove a deployed slice on the testbed, as its users would: guests boot on the slice's TAPs, get their
reserved addresses by DHCP, reach the other end of each link and its gateway, cannot reach other links, and
internet VMs fetch the internet host's page from behind the network node's NAT.

A VM the slice launched (its `vms` output has a `console`) is checked from inside its real QEMU guest,
through the serial console (`lab.vms`): its leases are the ones its own DHCP client took at boot. Any
other VM gets a stand-in guest (`lab.guest`: a namespace on a veth, bridged to the TAP) for the check.

``python -m lab.slicecheck [--stack dev] [--keep-guests]`` reads the stack's outputs with ``pulumi stack
output`` (run it after ``source scripts/activate``) and prints a table; exit status 1 when a check fails.

About 300 lines: the checks, the stand-in guests they start and the table are one command.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from lab import PROJECT_ROOT, guest, testbed
from lab import vms as launched_vms
from lab.common import LabError
from lab.pulumi_cli import PulumiCLI

LEASE_TIMEOUT = 120.0
"""Seconds a launched guest gets to hold its leases (TCG boots take a few seconds, more on a busy host)."""

_launched: dict[str, Any] = {}
"""VM id -> its `vms` output, for the launched VMs of the slice being checked (set by `check_slice`)."""


@dataclass
class Attachment:
    """One VM interface attached to a guest: what the slice promised and what DHCP gave."""

    vm: str
    iface: str
    worker: str
    tap: str
    vlan: int | None
    expected_ip: str | None
    got_ip: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.got_ip == self.expected_ip


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class Report:
    attachments: list[Attachment] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(a.ok for a in self.attachments) and all(c.ok for c in self.checks)


def guest_name(vm: str) -> str:
    return f"g{vm}"


def guest_exec(vm: str, *command: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    """Run a command in the VM's guest: the launched QEMU guest, else the stand-in guest."""
    if vm in _launched:
        res = launched_vms.exec_in(_launched, vm, list(command), timeout)
        return subprocess.CompletedProcess(list(command), res.returncode, res.stdout, "")
    return subprocess.run(
        guest.exec_argv(guest_name(vm), list(command)),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def can_ping(vm: str, address: str) -> bool:
    """One guest pings an address (3 tries, the first ARP may be lost on a fresh port)."""
    return guest_exec(vm, "ping", "-c", "3", "-i", "0.2", "-W", "2", address).returncode == 0


def cannot_ping(vm: str, address: str) -> bool:
    return guest_exec(vm, "ping", "-c", "2", "-i", "0.2", "-W", "1", address).returncode != 0


def fetch(vm: str, url: str) -> subprocess.CompletedProcess[str]:
    """An HTTP GET from the guest (busybox wget in launched guests, curl in stand-ins)."""
    if vm in _launched:
        return guest_exec(vm, "timeout", "5", "wget", "-q", "-O", "-", url)  # busybox 1.35: -T crashes
    return guest_exec(vm, "curl", "-s", "-m", "5", url)


def launched_leases(
    wanted: dict[tuple[str, str], str], timeout: float = LEASE_TIMEOUT
) -> dict[tuple[str, str], tuple[str | None, float]]:
    """Wait for launched guests to hold their reserved addresses, all guests at once.

    `wanted` maps (VM, iface) to the expected address; returns (address held, seconds until it was seen)
    per interface (the last address seen and the full wait when the expected one never came)."""
    t0 = time.monotonic()
    got: dict[tuple[str, str], tuple[str | None, float]] = {}
    done: set[tuple[str, str]] = set()
    while len(done) < len(wanted):
        for key, expected in wanted.items():
            if key in done:
                continue
            vm, iface = key
            try:
                out = guest_exec(vm, "ip", "-4", "-o", "addr", "show", "dev", iface, timeout=3).stdout
                m = re.search(r"inet ([0-9.]+)/", out)
                ip = m.group(1) if m else None
            except LabError:
                ip = None  # still booting: the shell does not answer yet
            got[key] = (ip, round(time.monotonic() - t0, 1))
            if ip == expected:
                done.add(key)
        if time.monotonic() - t0 > timeout:
            break
        time.sleep(0.3)
    return got


def attach_guests(vms: dict[str, Any]) -> list[Attachment]:
    """Start a guest per VM on every interface that has an address (eth0 first: its router is the default
    route), then run DHCP on each."""
    attachments: list[Attachment] = []
    for vm_id, vm in sorted(vms.items()):
        for iface, spec in sorted(vm["interfaces"].items()):
            if spec.get("ip") is None:
                continue
            att = Attachment(vm_id, iface, vm["worker"], spec["tap"], spec.get("vlan"), spec["ip"])
            attachments.append(att)
            if vm_id in _launched:
                continue
            try:
                guest.start(guest_name(vm_id), vm["worker"], spec["tap"], iface, spec["mac"])
            except LabError as exc:
                att.error = str(exc)
    wanted = {(a.vm, a.iface): a.expected_ip or "" for a in attachments if a.vm in _launched}
    leases = launched_leases(wanted) if wanted else {}
    for att in attachments:
        if att.vm in _launched:
            att.got_ip = leases[(att.vm, att.iface)][0]
            if att.got_ip is None:
                att.error = f"no DHCP lease within {LEASE_TIMEOUT:.0f}s"
        elif att.error is None:
            try:
                att.got_ip = guest.dhcp(guest_name(att.vm), att.iface)
            except LabError as exc:
                att.error = str(exc)
    return attachments


def link_checks(links: list[dict[str, Any]], attached: dict[tuple[str, str], Attachment]) -> list[Check]:
    """Both ends of each link reach each other and the gateway; neither reaches another link's ends."""
    checks: list[Check] = []
    ends: list[tuple[Attachment, Attachment, dict[str, Any]]] = []
    for link in links:
        a_key, b_key = (tuple(e.split(".", 1)) for e in link["endpoints"])
        a, b = attached.get(a_key), attached.get(b_key)
        label = " <-> ".join(link["endpoints"])
        if a is None or b is None or not (a.ok and b.ok):
            checks.append(Check(f"link {label}", False, "an endpoint has no lease"))
            continue
        ends.append((a, b, link))
        assert a.got_ip and b.got_ip
        results = {
            f"{a.vm}->{b.got_ip}": can_ping(a.vm, b.got_ip),
            f"{b.vm}->{a.got_ip}": can_ping(b.vm, a.got_ip),
            f"{a.vm}->gw {link['gateway']}": can_ping(a.vm, link["gateway"]),
            f"{b.vm}->gw {link['gateway']}": can_ping(b.vm, link["gateway"]),
        }
        failed = [k for k, ok in results.items() if not ok]
        checks.append(Check(f"link {label} (VLAN {link['vlan']})", not failed, ", ".join(failed)))
    for i, (a, b, link) in enumerate(ends):
        for other_a, other_b, other in ends[i + 1 :]:
            # A VM with an interface on both links reaches both legitimately: pick guests that are not.
            here, there = {a.vm, b.vm}, {other_a.vm, other_b.vm}
            pairs = [
                (x, y) for x in (a, b) for y in (other_a, other_b) if x.vm not in there and y.vm not in here
            ]
            if not pairs:
                continue
            x, y = pairs[0]
            assert y.got_ip
            ok = cannot_ping(x.vm, y.got_ip)
            checks.append(
                Check(
                    f"isolation VLAN {link['vlan']} / VLAN {other['vlan']} ({x.vm} -/-> {y.vm})",
                    ok,
                    "" if ok else f"{x.vm}.{x.iface} reached {y.vm}.{y.iface} ({y.got_ip})",
                )
            )
    return checks


def internet_checks(
    vms: dict[str, Any], attached: dict[tuple[str, str], Attachment], internet: dict[str, Any]
) -> list[Check]:
    """Each internet VM fetches the page and is seen by the internet host as the network node's uplink."""
    checks: list[Check] = []
    for vm_id, vm in sorted(vms.items()):
        eth0 = vm["interfaces"].get("eth0", {})
        if eth0.get("vlan") != 400:
            continue
        att = attached.get((vm_id, "eth0"))
        if att is None or not att.ok:
            checks.append(Check(f"internet {vm_id}", False, "eth0 has no lease"))
            continue
        page = fetch(vm_id, internet["url"])
        seen = fetch(vm_id, internet["whoamiUrl"])
        problems = []
        if page.returncode != 0 or page.stdout != internet["body"]:
            problems.append(f"page: curl exit {page.returncode}, body {page.stdout[:60]!r}")
        if seen.stdout.strip() != internet["networkNodeUplinkAddress"]:
            problems.append(f"seen as {seen.stdout.strip() or '?'} (not NAT to the uplink)")
        checks.append(Check(f"internet {vm_id} (NAT)", not problems, "; ".join(problems)))
    return checks


def use_launched(outputs: dict[str, Any]) -> None:
    """Remember which VMs of the deployed slice run as launched QEMU guests."""
    _launched.clear()
    _launched.update({k: v for k, v in outputs["vms"].items() if v.get("console")})


def check_slice(outputs: dict[str, Any], inventory: dict[str, Any]) -> Report:
    """Attach guests to a deployed slice and run every check. Guests stay up: `stop_guests` ends them."""
    use_launched(outputs)
    report = Report()
    report.attachments = attach_guests(outputs["vms"])
    attached = {(a.vm, a.iface): a for a in report.attachments}
    report.checks += link_checks(outputs["links"], attached)
    report.checks += internet_checks(outputs["vms"], attached, inventory["internet"])
    return report


def stop_guests(vms_output: dict[str, Any]) -> None:
    """Stop the stand-in guests (launched VMs belong to the stack: `pulumi destroy` stops them)."""
    for vm_id, vm in sorted(vms_output.items()):
        if not vm.get("console"):
            guest.stop(guest_name(vm_id))


def format_report(report: Report) -> str:
    rows = [("VM", "IFACE", "WORKER", "TAP", "VLAN", "IP", "DHCP")]
    for a in report.attachments:
        rows.append(
            (
                a.vm,
                a.iface,
                a.worker,
                a.tap,
                str(a.vlan),
                a.got_ip or "-",
                "ok" if a.ok else f"FAILED ({a.error or f'expected {a.expected_ip}'})",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.append("")
    for c in report.checks:
        lines.append(f"{'PASS' if c.ok else 'FAIL'}  {c.name}{'  ' + c.detail if c.detail else ''}")
    lines.append("")
    lines.append("slice check: " + ("all passed" if report.ok else "FAILED"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.slicecheck")
    parser.add_argument("--stack", default="dev")
    parser.add_argument("--keep-guests", action="store_true", help="leave the guests running")
    args = parser.parse_args(argv)
    inventory = testbed.read_inventory()
    if inventory is None:
        print("slicecheck: the testbed is down (python -m lab up)", file=sys.stderr)
        return 2
    out = PulumiCLI(PROJECT_ROOT, args.stack).run("stack", "output", "--json", check=False)
    if out.returncode != 0:
        print(f"slicecheck: cannot read the outputs of stack {args.stack}:\n{out.stderr}", file=sys.stderr)
        return 2
    outputs = json.loads(out.stdout)
    report = check_slice(outputs, inventory)
    try:
        print(format_report(report))
    finally:
        if not args.keep_guests:
            stop_guests(outputs["vms"])
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
