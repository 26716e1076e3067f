"""The allocation memory: the stack's own last outputs, read back at preview.

The program reads them with the engine's builtin invoke `pulumi:pulumi:readStackOutputs` -- the call
`StackReference` itself is built on -- so the values are plain data while the program runs, and the VLAN
allocation, the plan and every resource input are known at `pulumi preview`. What is read is parsed by
`components.outputs` (the module that writes them). See docs/design.md, "VLAN allocation memory".
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import pulumi

READ_STACK_OUTPUTS = "pulumi:pulumi:readStackOutputs"
READ_ATTEMPTS = 4
READ_RETRY_DELAY = 0.25


class AllocationMemoryError(RuntimeError):
    """The previous outputs of the stack could not be read."""


def own_stack_name() -> str:
    """The running stack's full name (`organization/<project>/<stack>` on the file backend)."""
    return f"{pulumi.get_organization()}/{pulumi.get_project()}/{pulumi.get_stack()}"


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
