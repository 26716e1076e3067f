"""Reads of host state as probe steps, and pure parsers of their output (shared by the resources)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from transport.script import ScriptResult, Step, probe, sh
from vocabulary import naming
from vocabulary.errors import CloudrepoError

PORT_COLUMNS = "name,tag,external_ids,protected,vlan_mode,trunks"

_TOOLS_BODY = 'for c in "$@"; do command -v "$c" >/dev/null 2>&1 || printf "%s\\n" "$c"; done'


class HostNotReady(CloudrepoError):
    """The host lacks a tool or the bridge: reported before any change."""


def tools_probe(*tools: str) -> Step:
    """Prints the missing tools, one per line."""
    return sh("tools", _TOOLS_BODY, *tools, kind="probe")


BRIDGE_EXISTS = '[ "$(ovs-vsctl --bare --columns=name find bridge "name=\\"$1\\"")" = "$1" ]'
"""$1 bridge: status 0 when it exists (`find` reads the Bridge table's names only; `br-exists` would load
every port and interface first)."""


def bridge_probe(bridge: str) -> Step:
    return sh("bridge", BRIDGE_EXISTS, bridge, kind="probe")


def readiness_steps(bridge: str | None, *tools: str) -> list[Step]:
    steps = [tools_probe(*tools)]
    if bridge is not None:
        steps.append(bridge_probe(bridge))
    return steps


def check_ready(host: str, res: ScriptResult, bridge: str | None) -> None:
    """Raise `HostNotReady` naming what is missing."""
    missing = res.out("tools").split()
    problems = [f"missing command(s): {', '.join(missing)}"] if missing else []
    if bridge is not None and res.ran("bridge") and res.status("bridge") != 0:
        problems.append(f"no OVS bridge {bridge!r}")
    if problems:
        raise HostNotReady(f"{host}: not ready: {'; '.join(problems)}")


@dataclass(frozen=True)
class PortState:
    """An OVS port as ovs-vsctl reports it."""

    name: str
    bridge: str | None
    tag: int | None
    external_ids: dict[str, str] = field(default_factory=dict)
    protected: bool = False
    vlan_mode: str | None = None
    trunks: tuple[int, ...] = ()

    @property
    def owner(self) -> str | None:
        return self.external_ids.get(naming.OWNER_KEY)


def port_probe(step_name: str, port: str) -> Step:
    return probe(
        step_name,
        "ovs-vsctl",
        "--format=json",
        "--data=json",
        f"--columns={PORT_COLUMNS}",
        "find",
        "port",
        f'name="{port}"',
    )


def port_bridge_probe(step_name: str, port: str) -> Step:
    return probe(step_name, "ovs-vsctl", "port-to-br", port)


def _atom(v: Any) -> Any:
    """OVSDB JSON: ["set", []] is empty, ["set", [x]] one value, ["map", [[k, v], ...]] a map."""
    if isinstance(v, list) and len(v) == 2 and v[0] == "set":
        items = v[1]
        return None if not items else (items[0] if len(items) == 1 else items)
    if isinstance(v, list) and len(v) == 2 and v[0] == "map":
        return {str(k): str(val) for k, val in v[1]}
    return v


def parse_port(find_json: str, bridge_out: str, bridge_status: int) -> PortState | None:
    """Parse `port_probe` (and `port_bridge_probe`) output; None when there is no such port."""
    text = find_json.strip()
    if not text:
        return None
    doc = json.loads(text)
    rows = doc.get("data") or []
    if not rows:
        return None
    row = dict(zip(doc["headings"], rows[0], strict=True))
    tag = _atom(row.get("tag"))
    trunks = _atom(row.get("trunks"))
    if trunks is None:
        trunks_t: tuple[int, ...] = ()
    elif isinstance(trunks, list):
        trunks_t = tuple(int(t) for t in trunks)
    else:
        trunks_t = (int(trunks),)
    ext = _atom(row.get("external_ids"))
    return PortState(
        name=str(row["name"]),
        bridge=bridge_out.strip() if bridge_status == 0 and bridge_out.strip() else None,
        tag=int(tag) if tag is not None else None,
        external_ids=ext if isinstance(ext, dict) else {},
        protected=bool(_atom(row.get("protected"))),
        vlan_mode=_atom(row.get("vlan_mode")),
        trunks=trunks_t,
    )


@dataclass(frozen=True)
class LinkState:
    """A kernel network interface as `ip -d -j addr show` reports it."""

    name: str
    up: bool
    kind: str | None
    alias: str | None
    addresses: tuple[str, ...] = ()


def link_probe(step_name: str, dev: str, netns: str | None = None) -> Step:
    ns = ["-n", netns] if netns else []
    return probe(step_name, "ip", *ns, "-d", "-j", "addr", "show", "dev", dev)


def parse_links(text: str) -> list[LinkState]:
    """Parse `ip -d -j addr show` output (any number of links)."""
    text = text.strip()
    if not text:
        return []
    out = []
    for item in json.loads(text):
        info = item.get("linkinfo") or {}
        kind = info.get("info_kind")
        if kind == "tun":
            kind = (info.get("info_data") or {}).get("type", "tun")
        addrs = tuple(
            f"{a['local']}/{a['prefixlen']}" for a in item.get("addr_info", []) if a.get("family") == "inet"
        )
        out.append(
            LinkState(
                name=item["ifname"],
                up="UP" in item.get("flags", []),
                kind=kind,
                alias=item.get("ifalias") or None,
                addresses=addrs,
            )
        )
    return out


def parse_link(text: str, status: int) -> LinkState | None:
    if status != 0:
        return None
    links = parse_links(text)
    return links[0] if links else None


def read_file_probe(step_name: str, path: str) -> Step:
    """Prints the file, status 0; status 1 and nothing when it does not exist."""
    return sh(step_name, '[ -f "$1" ] || exit 1; cat "$1"', path, kind="probe")
