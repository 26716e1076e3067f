"""A deterministic JSON picture of every network object on each simulated host.

Everything is read from inside the host (its network and mount namespace, entered through its anchor
process), so the picture is what the program would see over SSH. Volatile values (pids, ifindexes,
ofports (OpenFlow flows name their ports), counters, MAC addresses, link-local IPv6 addresses, uuids) are
left out: two scans of an unchanged testbed are equal.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from lab import sshd
from lab.common import LabError, host_ns, host_paths, run
from lab.procs import all_pids, cmdline, path_inode

OVS_TABLES = {
    "bridge": "_uuid,name,datapath_type,fail_mode,ports,external_ids,other_config",
    "port": "_uuid,name,tag,trunks,vlan_mode,protected,external_ids,other_config,interfaces",
    "interface": "_uuid,name,type,external_ids,options,error",
}

SCRIPT = r"""
for t in bridge port interface; do
  printf '@@ovs-%s\n' "$t"
  eval "cols=\$cols_$t"
  ovs-vsctl --timeout=5 --format=json --columns="$cols" list "$t" 2>&1
done
for br in $(ovs-vsctl --timeout=5 list-br 2>/dev/null); do
  printf '@@flows %s\n' "$br"; ovs-ofctl --names --no-stats dump-flows "$br" 2>&1
done
printf '@@link\n'; ip -j -d link show
printf '@@addr\n'; ip -j addr show
printf '@@route\n'; ip -j -4 route show table main
printf '@@netns\n'; ip netns list
printf '@@nat\n'; iptables-save -t nat 2>&1
printf '@@filter\n'; iptables-save -t filter 2>&1
printf '@@ip_forward\n'; cat /proc/sys/net/ipv4/ip_forward
for ns in $(ip netns list | cut -d' ' -f1); do
  printf '@@ns-link %s\n' "$ns"; ip -n "$ns" -j -d link show
  printf '@@ns-addr %s\n' "$ns"; ip -n "$ns" -j addr show
  printf '@@ns-route %s\n' "$ns"; ip -n "$ns" -j -4 route show table main
done
"""


def _sections(text: str) -> dict[str, str]:
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("@@"):
            current = line[2:].strip()
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    return {k: "\n".join(v) for k, v in sections.items()}


def _ovs_value(value: Any) -> Any:
    if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
        tag, body = value
        if tag == "set":
            return [_ovs_value(v) for v in body]
        if tag == "map":
            return {str(_ovs_value(k)): _ovs_value(v) for k, v in body}
        if tag in ("uuid", "named-uuid"):
            return body
    return value


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    return [value]


def _ovs_rows(text: str) -> list[dict[str, Any]]:
    text = text.strip()
    if not text.startswith("{"):
        raise LabError(f"ovs-vsctl failed: {text}")
    doc = json.loads(text)
    heads = doc["headings"]
    return [{h: _ovs_value(v) for h, v in zip(heads, row, strict=True)} for row in doc["data"]]


def _ovs(sections: dict[str, str]) -> dict[str, Any]:
    bridges = _ovs_rows(sections.get("ovs-bridge", ""))
    ports = {row["_uuid"]: row for row in _ovs_rows(sections.get("ovs-port", ""))}
    ifaces = {row["_uuid"]: row for row in _ovs_rows(sections.get("ovs-interface", ""))}
    result: dict[str, Any] = {}
    for br in bridges:
        port_map: dict[str, Any] = {}
        for puuid in _as_list(br["ports"]):
            port = ports.get(puuid)
            if port is None:
                continue
            iface_map: dict[str, Any] = {}
            for iuuid in _as_list(port["interfaces"]):
                iface = ifaces.get(iuuid)
                if iface is None:
                    continue
                error = iface["error"]
                iface_map[iface["name"]] = {
                    "type": iface["type"],
                    "external_ids": iface["external_ids"],
                    "options": iface["options"],
                    "error": error if isinstance(error, str) else None,
                }
            tag = port["tag"]
            vlan_mode = port["vlan_mode"]
            port_map[port["name"]] = {
                "tag": tag if isinstance(tag, int) else None,
                "trunks": sorted(_as_list(port["trunks"])),
                "vlan_mode": vlan_mode if isinstance(vlan_mode, str) else None,
                "protected": bool(port["protected"]),
                "external_ids": port["external_ids"],
                "other_config": port["other_config"],
                "interfaces": iface_map,
            }
        fail_mode = br["fail_mode"]
        result[br["name"]] = {
            "datapath_type": br["datapath_type"],
            "fail_mode": fail_mode if isinstance(fail_mode, str) else None,
            "external_ids": br["external_ids"],
            "other_config": br["other_config"],
            "ports": port_map,
            "flows": _flows(sections.get(f"flows {br['name']}", "")),
        }
    return result


def _flows(text: str) -> list[str]:
    """A bridge's OpenFlow flows (`ovs-ofctl --names --no-stats dump-flows`: ports by name, no counters)."""
    return sorted(line.strip() for line in text.splitlines() if line.strip())


def _json_list(text: str) -> list[dict[str, Any]]:
    text = text.strip()
    if not text:
        return []
    data = json.loads(text)
    return data if isinstance(data, list) else []


def _links(text: str) -> dict[str, Any]:
    links: dict[str, Any] = {}
    for entry in _json_list(text):
        info = entry.get("linkinfo", {})
        item: dict[str, Any] = {
            "kind": info.get("info_kind"),
            "up": "UP" in entry.get("flags", []),
            "mtu": entry.get("mtu"),
            "master": entry.get("master"),
        }
        if info.get("info_slave_kind"):
            item["slave_kind"] = info["info_slave_kind"]
        if item["kind"] == "tun":
            data = info.get("info_data", {})
            item["tun"] = {k: data.get(k) for k in ("type", "pi", "vnet_hdr", "multi_queue", "persist")}
        if item["kind"] == "vlan":
            item["vlan_id"] = info.get("info_data", {}).get("id")
        links[entry["ifname"]] = item
    return links


def _addresses(text: str) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for entry in _json_list(text):
        addrs = []
        for a in entry.get("addr_info", []):
            if a.get("family") == "inet6" and a.get("scope") == "link":
                continue
            addrs.append(f"{a['local']}/{a['prefixlen']}")
        if addrs:
            result[entry["ifname"]] = sorted(addrs)
    return result


def _routes(text: str) -> list[str]:
    routes = []
    for r in _json_list(text):
        words = [r.get("dst", "")]
        for key in ("gateway", "dev", "protocol", "scope", "prefsrc"):
            if r.get(key):
                words.append(f"{key} {r[key]}")
        routes.append(" ".join(words))
    return sorted(routes)


COUNTERS = re.compile(r"\s*\[\d+:\d+\]$")


def _iptables(text: str) -> list[str]:
    lines = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        lines.append(COUNTERS.sub("", line))
    return lines


def host_scan(host: str) -> dict[str, Any]:
    paths = host_paths(host)
    pid = sshd.init_pid(paths) or sshd.sshd_pid(paths)
    if pid is None:
        raise LabError(f"{host}: the host is not running (is the testbed up?)")
    env_cols = " ".join(f"cols_{t}={v}" for t, v in OVS_TABLES.items())
    proc = run(["nsenter", "-t", str(pid), "-m", "-n", "sh", "-c", f"{env_cols}\n{SCRIPT}"])
    sec = _sections(proc.stdout)
    namespaces = sorted(line.split()[0] for line in sec.get("netns", "").splitlines() if line.strip())
    ns_info = {}
    for ns in namespaces:
        ns_info[ns] = {
            "links": _links(sec.get(f"ns-link {ns}", "")),
            "addresses": _addresses(sec.get(f"ns-addr {ns}", "")),
            "routes": _routes(sec.get(f"ns-route {ns}", "")),
        }
    links = _links(sec.get("link", ""))
    return {
        "ovs": _ovs(sec),
        "links": links,
        "taps": sorted(n for n, v in links.items() if v.get("tun", {}).get("type") == "tap"),
        "addresses": _addresses(sec.get("addr", "")),
        "routes": _routes(sec.get("route", "")),
        "namespaces": ns_info,
        "iptables": {"nat": _iptables(sec.get("nat", "")), "filter": _iptables(sec.get("filter", ""))},
        "ip_forward": sec.get("ip_forward", "").strip() == "1",
        "dnsmasq": _dnsmasq(host, pid, namespaces),
    }


def _dnsmasq(host: str, anchor: int, namespaces: list[str]) -> list[dict[str, Any]]:
    labels: dict[int, str] = {}
    ino = path_inode(f"/run/netns/{host_ns(host)}")
    if ino is not None:
        labels[ino] = "(host)"
    for ns in namespaces:
        ino = path_inode(Path(f"/proc/{anchor}/root/run/netns") / ns)
        if ino is not None:
            labels[ino] = ns
    found = []
    for pid in all_pids():
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            net = os.stat(f"/proc/{pid}/ns/net").st_ino
        except OSError:
            continue
        if comm == "dnsmasq" and net in labels:
            found.append({"namespace": labels[net], "cmdline": cmdline(pid)})
    return sorted(found, key=lambda d: (d["namespace"], d["cmdline"]))


def scan(hosts: list[str]) -> dict[str, Any]:
    return {"hosts": {host: host_scan(host) for host in hosts}}


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"
