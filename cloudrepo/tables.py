"""What `cloudrepo show` and `cloudrepo list` print, as pure functions of stack outputs and history."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from cloudrepo.checkplan import Row
from components.model import POOL_SIZE
from vocabulary.netem import summary
from vocabulary.shown import terminal_safe


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns aligned on the widest cell, two spaces apart."""
    cells = [[str(c) for c in headers], *([("-" if c is None else str(c)) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def show(name: str, outputs: dict[str, Any]) -> str:
    """The slice's interfaces (VM, interface, TAP, VLAN, IP), then its links (with their `netem`)."""
    if not outputs:
        return f"slice {name}: not deployed (cloudrepo deploy {name})"
    pool = outputs.get("vlanPool") or {}
    links = outputs.get("links") or []
    span = f"{pool.get('start')}..{pool.get('end')}"
    used = f"{len(links)} of {POOL_SIZE} used"
    head = f"slice {outputs.get('slice', name)} (stack {name}): VLAN pool {span}, {used}"
    rows = []
    vms = outputs.get("vms") or {}
    for vm_id in sorted(vms, key=int):
        vm = vms[vm_id]
        for iface in sorted(vm["interfaces"], key=lambda i: int(i[3:])):
            spec = vm["interfaces"][iface]
            vlan = "parked" if spec.get("parked") else spec.get("vlan")
            rows.append([vm_id, vm.get("worker"), iface, spec.get("tap"), vlan, spec.get("ip")])
    interfaces = table(["VM", "worker", "interface", "TAP", "VLAN", "IP"], rows)
    shaped = any(impairment(link) for link in links)  # the netem column only when a link has one
    link_rows = [
        [link["vlan"], link["cidr"], link["gateway"], " -- ".join(link["endpoints"])]
        + ([impairment(link)] if shaped else [])
        for link in sorted(links, key=lambda link: int(link["vlan"]))
    ]
    headers = ["VLAN", "subnet", "gateway", "link"] + (["netem"] if shaped else [])
    link_table = table(headers, link_rows) if link_rows else "(no links)"
    return f"{head}\n\n{interfaces}\n\nlinks:\n{link_table}"


def impairment(link: dict[str, Any]) -> str | None:
    """A link's `netem` output on one line, with the qdisc that carries it (None: not shaped)."""
    shape = link.get("netem")
    if not isinstance(shape, dict) or not shape:
        return None
    return f"{summary(shape)} ({link.get('qdisc')})"


def when(moment: datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else None


def list_row(
    name: str, outputs: dict[str, Any], kind: str | None, result: str | None, end: datetime | None
) -> list[Any]:
    """One slice in `cloudrepo list`: name, pool, links used of 20, last update, its kind and result."""
    pool = outputs.get("vlanPool") or {}
    span = f"{pool['start']}..{pool['end']}" if pool else None
    used = f"{len(outputs.get('links') or [])}/{POOL_SIZE}" if pool else None
    return [name, span, used, when(end), kind, result]


def list_table(rows: Sequence[Sequence[Any]]) -> str:
    if not rows:
        return "no slices in this backend"
    return table(["slice", "pool", "links", "last update (UTC)", "kind", "result"], rows)


def printable(text: str) -> str:
    """Text a table shows as it is: tabs expanded, control characters escaped (`terminal_safe`)."""
    return terminal_safe(text).expandtabs(8)


def exec_table(results: Sequence[tuple[int, int, str]]) -> str:
    """`cloudrepo exec`: one row per VM (its exit code, its output's first line), the further lines of
    its output below it."""
    rows: list[tuple[Any, Any, str]] = []
    for vm, code, output in results:
        lines = printable(output).rstrip("\n").split("\n")
        rows.append((vm, code, lines[0]))
        rows.extend(("", "", line) for line in lines[1:])
    return table(("vm", "exit", "output"), rows)


def check_table(rows: Sequence[Row]) -> str:
    """`cloudrepo check`: one row per check, then the verdict."""
    body = [
        (r.check, r.vm, r.via, r.what, r.expected, r.got, "PASS" if r.ok else "FAIL", printable(r.detail))
        for r in rows
    ]
    failed = [r.check for r in rows if not r.ok]
    verdict = f"{len(rows) - len(failed)}/{len(rows)} checks hold" + (
        f"; FAILED: {', '.join(failed)}" if failed else ""
    )
    head = ("check", "from", "via", "to/what", "expected", "got", "result", "detail")
    return table(head, body) + "\n\n" + verdict


def check_json(name: str, rows: Sequence[Row]) -> dict[str, Any]:
    """`cloudrepo check --json`."""
    return {
        "slice": name,
        "ok": all(r.ok for r in rows),
        "checks": [
            {
                "check": r.check,
                "from": r.vm,
                "via": r.via,
                "what": r.what,
                "expected": r.expected,
                "got": r.got,
                "result": "PASS" if r.ok else "FAIL",
                "detail": r.detail,
            }
            for r in rows
        ],
    }
