"""The verbs' edits of a slice section (`cloudrepo:slice`), pure: each returns a new section.

An edit that cannot apply (a link that is not there) raises `EditError`; whether the result is a valid
slice is the business of the checks (`stackfile.check`), run before anything is written.
"""

from __future__ import annotations

import copy
from typing import Any

from components.topology import MIN_VMS
from vocabulary.shown import shown


class EditError(ValueError):
    """The edit names something the slice does not have."""


Section = dict[str, Any]


def _list(section: Section, key: str) -> list[Any]:
    """The section's list under `key` (made empty when absent or null); `EditError` when it is something
    else."""
    if section.get(key) is None:
        section[key] = []
    value = section[key]
    if not isinstance(value, list):
        raise EditError(f"cloudrepo:slice.{key} is not a list, got {shown(value)}: fix the stack config file")
    return value


def _ends(raw: Any) -> set[str]:
    ends = [raw.get("a"), raw.get("b")] if isinstance(raw, dict) else raw
    return {e for e in ends if isinstance(e, str)} if isinstance(ends, list | tuple) else set()


def new_slice(pool_start: int, base: Section | None = None) -> Section:
    """A slice section: `base` (e.g. from `--from`) without its name (the stack name is the slice's name),
    with the pool starting at `pool_start`."""
    out = copy.deepcopy(base or {})
    out.pop("name", None)
    out["vlanPool"] = {"start": pool_start}
    out.setdefault("vms", [])
    out.setdefault("links", [])
    return out


def add_vm(section: Section, vm_id: int, worker: str, data_interfaces: int, internet: bool) -> Section:
    out = copy.deepcopy(section)
    vm: dict[str, Any] = {"id": vm_id, "worker": worker, "dataInterfaces": data_interfaces}
    if internet:
        vm["internet"] = True
    _list(out, "vms").append(vm)
    return out


def rm_vm(section: Section, vm_id: int) -> tuple[Section, list[str]]:
    """Remove the VM, its written links, and the VM from presets (a preset left too small goes too).

    Returns the new section and what else went, for the operator."""
    out = copy.deepcopy(section)
    vms = _list(out, "vms")
    if not any(isinstance(v, dict) and v.get("id") == vm_id for v in vms):
        raise EditError(f"VM {vm_id} is not in the slice")
    out["vms"] = [v for v in vms if not (isinstance(v, dict) and v.get("id") == vm_id)]
    notes: list[str] = []
    kept = []
    for link in _list(out, "links"):
        if any(end.split(".", 1)[0] == str(vm_id) for end in _ends(link)):
            notes.append(f"link {' -- '.join(sorted(_ends(link)))} removed")
        else:
            kept.append(link)
    out["links"] = kept
    if "topology" in out:
        entries = []
        for entry in _list(out, "topology"):
            members = entry.get("vms") if isinstance(entry, dict) else None
            if isinstance(members, list) and vm_id in members:
                rest = [v for v in members if v != vm_id]
                preset = entry.get("preset")
                if len(rest) < MIN_VMS.get(str(preset), 0):
                    notes.append(f"{preset} of {shown(members)} removed (too few VMs left)")
                    continue
                entry = {**entry, "vms": rest}
                notes.append(f"{preset} now of {rest}")
            entries.append(entry)
        out["topology"] = entries
    return out, notes


def add_link(section: Section, a: str, b: str, vlan: int | None = None) -> Section:
    out = copy.deepcopy(section)
    _list(out, "links").append([a, b] if vlan is None else {"a": a, "b": b, "vlan": vlan})
    return out


def rm_link(section: Section, a: str, b: str) -> Section:
    out = copy.deepcopy(section)
    links = _list(out, "links")
    kept = [link for link in links if _ends(link) != {a, b}]
    if len(kept) == len(links):
        hint = (
            " (links of presets go with `vm rm` or by editing slice.topology)" if out.get("topology") else ""
        )
        raise EditError(f"no written link {a} -- {b} in the slice{hint}")
    out["links"] = kept
    return out


def add_topology(section: Section, preset: str, vms: list[int]) -> Section:
    out = copy.deepcopy(section)
    _list(out, "topology").append({"preset": preset, "vms": list(vms)})
    return out
