"""Prove a deployed slice on the testbed, as its users would: guests boot on the slice's TAPs, get their
reserved addresses by DHCP, reach the other end of each link and its gateway, cannot reach other links, and
internet VMs fetch the internet host's page from behind the network node's NAT.

A VM the slice launched (its `vms` output has a `console`) is checked from inside its real QEMU guest,
through the serial console (`lab.vms`): its leases are the ones its own DHCP client took at boot. Any
other VM gets a stand-in guest (`lab.guest`: a namespace on a veth, bridged to the TAP) for the check.

``python -m lab.slicecheck [--stack dev] [--keep-guests]`` reads the stack's outputs with ``pulumi stack
output`` (run it after ``source scripts/activate``) and prints a table; exit status 1 when a check fails.

The pings between guests are checks of `cloudrepo check` (`cloudrepo.checkplan`, run by
`cloudrepo.checkrun` through `lab_shell`), and the slice's own `slice.checks` run with them; what this adds
stays the testbed's: the stand-in guests, the checks a link implies, the NAT proof against the testbed's
internet host.

About 330 lines: the checks, the stand-in guests they start and the table are one command.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloudrepo import checkplan, checkrun, stackfile, tables
from cloudrepo.checkplan import Outcome, Probe
from components.check_specs import Reach
from lab import PROJECT_ROOT, guest, testbed
from lab import vms as launched_vms
from lab.common import LabError
from lab.pulumi_cli import PulumiCLI
from vocabulary.errors import ConfigError

LEASE_TIMEOUT = 120.0
"""Seconds a launched guest gets to hold its leases (TCG boots take a few seconds, more on a busy host)."""

_launched: dict[str, Any] = {}
"""VM id -> its `vms` output, for the launched VMs of the slice being checked (set by `check_slice`)."""
_vms: dict[str, Any] = {}
"""The `vms` output of the slice being checked (set by `use_launched`)."""


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
    declared: list[checkplan.Row] = field(default_factory=list)
    """The slice's own `slice.checks`, as `cloudrepo check` reports them."""

    @property
    def ok(self) -> bool:
        return (
            all(a.ok for a in self.attachments)
            and all(c.ok for c in self.checks)
            and all(r.ok for r in self.declared)
        )


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
    """One guest pings an address (`checkplan.REACH_PING`: 3 tries, the first ARP may be lost)."""
    return guest_exec(vm, *checkplan.REACH_PING, address).returncode == 0


def cannot_ping(vm: str, address: str) -> bool:
    return guest_exec(vm, *checkplan.BLOCKED_PING, address).returncode != 0


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


def lab_shell(probe: Probe, timeout: float) -> Outcome:
    """The testbed's way into a guest for `cloudrepo.checkrun`: the launched guest's console socket on
    this machine (its lock taken), else the stand-in guest's namespace."""
    try:
        res = guest_exec(str(probe.vm), *probe.argv, timeout=timeout)
    except (LabError, subprocess.TimeoutExpired) as exc:
        return Outcome(None, error=str(exc))
    return Outcome(res.returncode, res.stdout + res.stderr)


def lab_path(vm: int) -> str:
    return "console" if str(vm) in _launched else "stand-in"


LINK_CHECK_WAIT = 60.0
"""Seconds the failing rows of `link_checks` are run again."""


def link_checks(links: list[dict[str, Any]], attached: dict[tuple[str, str], Attachment]) -> list[Check]:
    """Both ends of each link reach each other and the gateway; neither reaches another link's ends (a
    `blocked` check of `cloudrepo check`: it counts only when the guest reaches its own gateway). Every
    ping is a check of `cloudrepo.checkplan`, run by `cloudrepo.checkrun` through `lab_shell`."""
    groups: list[tuple[str, list[int]]] = []
    specs: list[Reach] = []
    out: list[Check] = []

    def add(spec_args: dict[str, Any]) -> int:
        specs.append(Reach(len(specs), **spec_args))
        return len(specs) - 1

    ends: list[tuple[Attachment, Attachment, dict[str, Any]]] = []
    for link in links:
        a_key, b_key = (tuple(e.split(".", 1)) for e in link["endpoints"])
        a, b = attached.get(a_key), attached.get(b_key)
        label = " <-> ".join(link["endpoints"])
        if a is None or b is None or not (a.ok and b.ok):
            out.append(Check(f"link {label}", False, "an endpoint has no lease"))
            continue
        ends.append((a, b, link))
        gw = link["gateway"]
        members = [
            add({"src": int(x.vm), "expect": "reach", "dst_vm": int(y.vm), "dst_iface": y.iface})
            for x, y in ((a, b), (b, a))
        ] + [add({"src": int(x.vm), "expect": "reach", "host": gw, "label": "gw"}) for x in (a, b)]
        groups.append((f"link {label} (VLAN {link['vlan']})", members))
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
            n = add({"src": int(x.vm), "expect": "blocked", "dst_vm": int(y.vm), "dst_iface": y.iface})
            groups.append((f"isolation VLAN {link['vlan']} / VLAN {other['vlan']} ({x.vm} -/-> {y.vm})", [n]))
    # a failing row is run again for up to a minute (guests just booted on a loaded host may miss one ping);
    # an isolation breach that stays fails as surely as before
    rows = checkrun.run(checkplan.plan(specs, {"vms": _vms}), lab_shell, lab_path, wait=LINK_CHECK_WAIT)
    for name, members in groups:
        failed = [rows[n] for n in members if not rows[n].ok]
        detail = ", ".join(
            f"{r.vm}->{r.what}: {r.got}{' (' + r.detail + ')' if r.detail else ''}" for r in failed
        )
        out.append(Check(name, not failed, detail))
    return out


def declared_checks(stack: str, outputs: dict[str, Any], project: Path = PROJECT_ROOT) -> list[checkplan.Row]:
    """The slice's own `slice.checks` (its stack config file in `project`), run as `cloudrepo check` runs
    them, through `lab_shell`."""
    path = stackfile.stack_file(project, stack)
    if not path.exists():
        return []
    config = stackfile.config_of(stackfile.read(path))
    checks = stackfile.check(config, stack, outputs, project).config.checks
    return checkrun.run(checkplan.plan(checks, outputs), lab_shell, lab_path, wait=LEASE_TIMEOUT)


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
    _vms.clear()
    _vms.update(outputs["vms"])


def check_slice(
    outputs: dict[str, Any], inventory: dict[str, Any], stack: str | None = None, project: Path = PROJECT_ROOT
) -> Report:
    """Attach guests to a deployed slice and run every check, with the slice's declared checks when its
    `stack` is given (its config file in `project`). Guests stay up: `stop_guests` ends them."""
    use_launched(outputs)
    report = Report()
    report.attachments = attach_guests(outputs["vms"])
    attached = {(a.vm, a.iface): a for a in report.attachments}
    report.checks += link_checks(outputs["links"], attached)
    report.checks += internet_checks(outputs["vms"], attached, inventory["internet"])
    if stack is not None:
        report.declared = declared_checks(stack, outputs, project)
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
    if report.declared:
        lines += ["the slice's declared checks (slice.checks, as `cloudrepo check` runs them):"]
        lines += [tables.check_table(report.declared), ""]
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
    try:
        report = check_slice(outputs, inventory, args.stack)
    except ConfigError as exc:
        print(f"slicecheck: {exc}", file=sys.stderr)
        return 2
    try:
        print(format_report(report))
    finally:
        if not args.keep_guests:
            stop_guests(outputs["vms"])
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
