"""A picture of a deployed slice, from its stack outputs alone (`pulumi stack output --json`).

`slice_graph(outputs)` is pure: it builds the Graphviz graph (workers holding their VMs, each VM's
interfaces with IP or "parked", one edge per link labelled with its VLAN, subnet and `netem`, the network
node with each VLAN's gateway and DHCP namespace, VLAN 400 and NAT for internet VMs). `write_diagram`
renders it to SVG or PNG by the file's suffix with Graphviz's `dot`.
"""

from __future__ import annotations

import itertools
from html import escape
from pathlib import Path
from typing import Any

import graphviz

from cloudrepo.tables import impairment
from components.model import INTERNET_VLAN
from components.plan import INTERNET_SUBNET, host_in
from vocabulary.naming import dhcp_namespace, gateway_port

FORMATS = {".svg": "svg", ".png": "png"}
LINK_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")
PARKED_GREY = "#9a9a9a"
NAT_GREEN = "#2e7d32"
FONT = "Helvetica"


def _vm_node(vm_id: str) -> str:
    return f"vm{vm_id}"


def _vm_label(vm_id: str, vm: dict[str, Any]) -> str:
    """An HTML-like table: the VM, then one row (a port for edges) per interface."""
    rows = [f'<TR><TD COLSPAN="2" BGCOLOR="#e8eef7"><B>VM {escape(vm_id)}</B></TD></TR>']
    for iface, spec in sorted(vm["interfaces"].items(), key=lambda kv: int(kv[0][3:])):
        if spec.get("parked"):
            grey = f'<FONT COLOR="{PARKED_GREY}">'
            rows.append(
                f'<TR><TD PORT="w_{iface}" ALIGN="LEFT">{grey}{iface}</FONT></TD>'
                f'<TD PORT="e_{iface}" ALIGN="LEFT">{grey}<I>parked</I></FONT></TD></TR>'
            )
        else:
            address = escape(str(spec["ip"] or "(address by DHCP)"))
            rows.append(
                f'<TR><TD PORT="w_{iface}" ALIGN="LEFT">{iface}</TD>'
                f'<TD PORT="e_{iface}" ALIGN="LEFT">{address}</TD></TR>'
            )
    return '<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="4">' + "".join(rows) + "</TABLE>>"


def _network_label(links: list[dict[str, Any]], internet: bool) -> str:
    """The network node: one row per VLAN with its gateway port and DHCP namespace; VLAN 400 with NAT."""
    head = (
        '<TR><TD COLSPAN="3" BGCOLOR="#fdf3e1"><B>network node</B></TD></TR>'
        "<TR><TD><I>VLAN</I></TD><TD><I>gateway</I></TD><TD><I>DHCP namespace</I></TD></TR>"
    )
    rows = []
    for link in sorted(links, key=lambda link: int(link["vlan"])):
        vlan = int(link["vlan"])
        rows.append(
            f"<TR><TD>{vlan}</TD><TD>{gateway_port(vlan)} {escape(str(link['gateway']))}</TD>"
            f"<TD>{dhcp_namespace(vlan)}</TD></TR>"
        )
    if internet:
        rows.append(
            f'<TR><TD PORT="nat" BGCOLOR="#e6f2e6">{INTERNET_VLAN} + NAT</TD>'
            f"<TD>{gateway_port(INTERNET_VLAN)} {host_in(INTERNET_SUBNET, 1)}</TD>"
            f'<TD PORT="v{INTERNET_VLAN}">{dhcp_namespace(INTERNET_VLAN)}</TD></TR>'
        )
    return (
        '<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="4">'
        + head
        + "".join(rows)
        + "</TABLE>>"
    )


def slice_graph(outputs: dict[str, Any]) -> graphviz.Graph:
    """The slice as a Graphviz graph (pure: no file, no process).

    Columns from left to right: the internet, the network node, then one per worker (its VMs stacked).
    A link leaves its left VM's interface eastwards and enters the right one's from the west.
    """
    name = str(outputs.get("slice") or "slice")
    pool = outputs.get("vlanPool") or {}
    links: list[dict[str, Any]] = list(outputs.get("links") or [])
    vms: dict[str, dict[str, Any]] = dict(outputs.get("vms") or {})
    internet_vms = sorted((v for v, vm in vms.items() if vm.get("internet")), key=int)
    title = f"slice {name}"
    if pool:
        title += f" (VLAN pool {pool.get('start')}..{pool.get('end')}, {len(links)} of 20 used)"

    g = graphviz.Graph(
        name,
        graph_attr={
            "label": title,
            "labelloc": "t",
            "fontname": FONT,
            "fontsize": "16",
            "rankdir": "LR",
            "nodesep": "0.4",
            "ranksep": "1.6",
            "newrank": "true",
        },
        node_attr={"shape": "plaintext", "fontname": FONT, "fontsize": "11"},
        edge_attr={"fontname": FONT, "fontsize": "10"},
    )
    columns: list[list[str]] = []
    if internet_vms:
        g.node("internet", "internet", shape="ellipse", style="dashed", fontcolor=NAT_GREEN, color=NAT_GREEN)
        columns.append(["internet"])
    g.node("network", _network_label(links, bool(internet_vms)))
    columns.append(["network"])
    workers = sorted({str(vm["worker"]) for vm in vms.values()})
    for worker in workers:
        members = [_vm_node(v) for v in sorted((v for v in vms if vms[v]["worker"] == worker), key=int)]
        with g.subgraph(name=f"cluster_{worker}") as c:
            c.attr(label=worker, style="rounded", color="#555555", fontname=FONT, fontsize="13")
            for node in members:
                c.node(node, _vm_label(node[2:], vms[node[2:]]))
        columns.append(members)
    for column in columns:
        with g.subgraph() as same:
            same.attr(rank="same")
            for node in column:
                same.node(node)
    for left, right in itertools.pairwise(columns):
        g.edge(left[0], right[0], style="invis")

    order = {node: k for k, column in enumerate(columns) for node in column}
    for i, link in enumerate(links):
        ends = sorted((str(e).split(".", 1) for e in link["endpoints"]), key=lambda e: order[_vm_node(e[0])])
        (a_vm, a_if), (b_vm, b_if) = ends
        colour = LINK_COLOURS[i % len(LINK_COLOURS)]
        same_column = order[_vm_node(a_vm)] == order[_vm_node(b_vm)]
        g.edge(
            f"{_vm_node(a_vm)}:e_{a_if}:e",
            f"{_vm_node(b_vm)}:{'e' if same_column else 'w'}_{b_if}:{'e' if same_column else 'w'}",
            label="\n".join(
                x for x in (f"VLAN {link['vlan']}", str(link["cidr"]), impairment(link)) if x is not None
            ),
            color=colour,
            fontcolor=colour,
            penwidth="2",
            constraint="false",
        )
    for vm_id in internet_vms:
        g.edge(
            f"network:v{INTERNET_VLAN}:e",
            f"{_vm_node(vm_id)}:w_eth0:w",
            label=f"VLAN {INTERNET_VLAN}\n{INTERNET_SUBNET}",
            color=NAT_GREEN,
            fontcolor=NAT_GREEN,
            style="dashed",
            constraint="false",
        )
    if internet_vms:
        g.edge(
            "internet:e",
            "network:nat:w",
            label="NAT (MASQUERADE)\nvia the uplink",
            color=NAT_GREEN,
            fontcolor=NAT_GREEN,
            constraint="false",
        )
    return g


def diagram_format(path: Path) -> str:
    """'svg' or 'png' by the file's suffix; ValueError naming the suffix otherwise."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(FORMATS)
        raise ValueError(f"{path}: unknown picture format {path.suffix or '(no suffix)'!r} (known: {known})")
    return fmt


def render(outputs: dict[str, Any], fmt: str) -> bytes:
    """The picture as bytes of `fmt` (runs Graphviz's `dot`)."""
    return bytes(slice_graph(outputs).pipe(format=fmt))


def write_diagram(outputs: dict[str, Any], path: Path) -> Path:
    """Render the slice into `path` (SVG or PNG by suffix) and return it."""
    data = render(outputs, diagram_format(path))
    path.write_bytes(data)
    return path
