"""Live state of a slice's launched VMs: one SSH login per worker (the stack's own settings,
`hostaccess`), one script that says for each VM whether its QEMU runs (its pid file names a live QEMU
process, the test `cloudrepo console` makes before attaching); and one login to the network node that reads
the link VLANs' dnsmasq lease files, so the page tells which addresses a guest has taken by DHCP."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import paramiko

from cloudrepo import console, hostaccess, top
from cloudrepo.engine import SliceError
from cloudrepo.hostaccess import SecretSource
from vocabulary import naming

_STATUS = r"""for arg; do
  vm=${arg%%=*}; pf=${arg#*=}
  pid=$(cat "$pf" 2>/dev/null)
  case $pid in ''|*[!0-9]*) echo "$vm stopped"; continue ;; esac
  if tr '\000' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF -- "$pf"; then echo "$vm running"
  else echo "$vm stopped"; fi
done
"""
STATES = ("running", "stopped")
_LEASES = r"""for f; do [ -f "$f" ] && cat -- "$f"; done; exit 0
"""


def status_argv(vms: list[int]) -> list[str]:
    return ["sh", "-c", _STATUS, "sh", *(f"{vm}={naming.vm_dir(vm)}/qemu.pid" for vm in vms)]


def parse(text: str, asked: list[int]) -> dict[int, str]:
    """`{vm: running|stopped}` for the asked VMs from the script's lines (a VM it did not name: unknown)."""
    said: dict[int, str] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit() and parts[1] in STATES:
            said[int(parts[0])] = parts[1]
    return {vm: said.get(vm, "unknown") for vm in asked}


def live(slices: SecretSource, name: str, outputs: Mapping[str, Any]) -> dict[int, str]:
    """Each launched VM's state; a worker that cannot be asked gives `unknown: <why>` for its VMs."""
    out: dict[int, str] = {}
    for worker, vms in top.launched(dict(outputs)).items():
        try:
            endpoint, login = hostaccess.worker_login(slices, name, worker)
            client = hostaccess.connect(endpoint, login)
        except SliceError as exc:
            out.update({vm: f"unknown: {exc}" for vm in vms})
            continue
        try:
            text, _, status = console.run_command(client, status_argv(vms), login.sudo)
            out.update(
                parse(text.decode(errors="replace"), vms) if status == 0 else dict.fromkeys(vms, "unknown")
            )
        except (paramiko.SSHException, EOFError, SliceError) as exc:
            out.update({vm: f"unknown: {exc}" for vm in vms})
        finally:
            client.close()
    return out


def leases_argv(vlans: list[int]) -> list[str]:
    return ["sh", "-c", _LEASES, "sh", *(f"{naming.dhcp_dir(v)}/leases" for v in vlans)]


def leased(text: str) -> set[str]:
    """The addresses in dnsmasq lease lines (`expiry mac address hostname client-id`)."""
    out = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0].isdigit() and parts[2].count(".") == 3:
            out.add(parts[2])
    return out


def leases(slices: SecretSource, name: str, outputs: Mapping[str, Any]) -> set[str] | None:
    """The addresses leased on the slice's link VLANs now; None when the network node cannot be asked."""
    links = outputs.get("links")
    vlans = (
        sorted({int(link["vlan"]) for link in links if isinstance(link, dict) and "vlan" in link})
        if isinstance(links, list)
        else []
    )
    if not vlans:
        return set()
    try:
        endpoint, login = hostaccess.network_login(slices, name)
        client = hostaccess.connect(endpoint, login)
    except SliceError:
        return None
    try:
        text, _, status = console.run_command(client, leases_argv(vlans), login.sudo)
        return leased(text.decode(errors="replace")) if status == 0 else None
    except (paramiko.SSHException, EOFError, SliceError):
        return None
    finally:
        client.close()
