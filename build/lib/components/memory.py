"""The allocation memory: what the previous run of this stack deployed, read back at preview.

The program reads its own stack's last outputs (`links`, `vms`) with the engine's builtin invoke
`pulumi:pulumi:readStackOutputs` -- the call `StackReference` itself is built on -- so the values are plain
data while the program runs, and the VLAN allocation, the plan and every resource input are known at
`pulumi preview`. See docs/design.md, "VLAN allocation memory".
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import pulumi

from components.allocation import previous_allocation, previous_internet_ips
from components.config import LinkKey

READ_STACK_OUTPUTS = "pulumi:pulumi:readStackOutputs"


class AllocationMemoryError(RuntimeError):
    """The previous outputs of the stack could not be read."""


def own_stack_name() -> str:
    """The running stack's full name (`organization/<project>/<stack>` on the file backend)."""
    return f"{pulumi.get_organization()}/{pulumi.get_project()}/{pulumi.get_stack()}"


READ_ATTEMPTS = 4
READ_RETRY_DELAY = 0.25


def read_previous_outputs(stack: str | None = None) -> dict[str, Any]:
    """The outputs of the last update of `stack` (default: this stack); `{}` before the first update.

    The engine writes this stack's checkpoint while the program starts (the update in progress), so a read
    can meet a checkpoint being written (seen on the file backend: "failed to load checkpoint: EOF"): a
    failed read is tried again a few times before it is an error."""
    name = stack or own_stack_name()
    for attempt in range(1, READ_ATTEMPTS + 1):
        try:
            result = pulumi.runtime.invoke(READ_STACK_OUTPUTS, {"name": name})
            break
        except Exception as exc:
            if attempt < READ_ATTEMPTS:
                time.sleep(READ_RETRY_DELAY * attempt)
                continue
            raise AllocationMemoryError(
                f"cannot read the previous outputs of stack {name!r} (the VLAN allocation memory): {exc}"
            ) from exc
    value = result.value if result is not None else None
    if not isinstance(value, Mapping):
        return {}
    outputs = value.get("outputs")
    return dict(outputs) if isinstance(outputs, Mapping) else {}


def previous_interface_vlans(vms_output: Any) -> dict[str, int | None]:
    """`VM.ethN` -> the VLAN the interface had in the previous run (None where it was parked)."""
    out: dict[str, int | None] = {}
    if not isinstance(vms_output, Mapping):
        return out
    for vm_text, vm in vms_output.items():
        ifaces = vm.get("interfaces") if isinstance(vm, Mapping) else None
        if not isinstance(ifaces, Mapping):
            continue
        for iface, data in ifaces.items():
            if not isinstance(data, Mapping):
                continue
            vlan = data.get("vlan")
            if isinstance(vlan, float) and vlan.is_integer():
                vlan = int(vlan)
            out[f"{vm_text}.{iface}"] = vlan if isinstance(vlan, int) and not isinstance(vlan, bool) else None
    return out


class Memory:
    """The parts of the previous outputs the program uses."""

    def __init__(self, outputs: Mapping[str, Any]) -> None:
        self.vlans: dict[LinkKey, int] = previous_allocation(outputs.get("links"))
        self.internet_ips: dict[int, str] = previous_internet_ips(outputs.get("vms"))
        self.interface_vlans: dict[str, int | None] = previous_interface_vlans(outputs.get("vms"))
