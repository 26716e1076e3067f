"""The slice picture (cloudrepo/diagram.py) rendered by the real Graphviz from the golden stack outputs."""

from __future__ import annotations

import json
import re
import shutil
from html import unescape
from pathlib import Path
from typing import Any

import pytest

from cloudrepo.diagram import diagram_format, slice_graph, write_diagram

GOLDEN = Path(__file__).parents[1] / "components" / "golden"
TOPOLOGIES = ("dev", "ring", "star", "mesh")

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` missing (make setup)")


def golden(name: str) -> dict[str, Any]:
    return dict(json.loads((GOLDEN / f"{name}.json").read_text())["outputs"])


@needs_dot
@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_svg_holds_every_vm_vlan_subnet_and_address(topology: str, tmp_path: Path) -> None:
    outputs = golden(topology)
    svg = unescape(write_diagram(outputs, tmp_path / f"{topology}.svg").read_text())
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    for vm_id, vm in outputs["vms"].items():
        assert f"VM {vm_id}" in svg
        assert f">{vm['worker']}<" in svg
        for iface, spec in vm["interfaces"].items():
            assert f">{iface}<" in svg
            if spec["parked"]:
                assert ">parked<" in svg
            else:
                assert f">{spec['ip'] or '(address by DHCP)'}<" in svg
    for link in outputs["links"]:
        vlan = link["vlan"]
        assert f">VLAN {vlan}<" in svg, vlan
        assert f">{link['cidr']}<" in svg
        assert f"gw_vlan{vlan} {link['gateway']}" in svg
        assert f">ns-dhcp-vlan{vlan}<" in svg
    internet = any(vm["internet"] for vm in outputs["vms"].values())
    for text in ("VLAN 400", "10.60.7.0/24", "ns-dhcp-vlan400", "NAT (MASQUERADE)", ">internet<"):
        assert (text in svg) == internet, text


def test_one_edge_per_link_from_interface_to_interface() -> None:
    outputs = golden("ring")
    source = slice_graph(outputs).source
    edges = re.findall(
        r"vm(\d+):[ew]_(eth\d+):[ew] -- vm(\d+):[ew]_(eth\d+):[ew] \[label=\"VLAN (\d+)\n", source
    )
    drawn = {(frozenset({f"{a}.{ai}", f"{b}.{bi}"}), int(vlan)) for a, ai, b, bi, vlan in edges}
    assert len(edges) == len(outputs["links"])
    assert drawn == {(frozenset(link["endpoints"]), link["vlan"]) for link in outputs["links"]}


def test_parked_interfaces_are_marked_and_have_no_edge() -> None:
    source = slice_graph(golden("dev")).source
    assert source.count("<I>parked</I>") == 3  # 1003.eth0, 1004.eth0, 1004.eth2
    assert "vm1004:e_eth2" not in source and "vm1004:w_eth2" not in source


@needs_dot
def test_png_by_suffix(tmp_path: Path) -> None:
    data = write_diagram(golden("star"), tmp_path / "star.PNG").read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")


def test_unknown_suffix_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"'\.pdf'.*known: \.svg, \.png"):
        diagram_format(tmp_path / "x.pdf")
    with pytest.raises(ValueError, match="no suffix"):
        diagram_format(tmp_path / "x")


def test_empty_slice_still_draws_the_network_node() -> None:
    source = slice_graph(
        {"slice": "empty", "vlanPool": {"start": 120, "end": 139}, "links": [], "vms": {}}
    ).source
    assert "network node" in source and "0 of 20 used" in source
