"""The slice's declared checks (`cloudrepo:slice.checks`), validated: what each one expects (no I/O).

`components.checks` makes them from the config; `cloudrepo.checkplan` turns them and the stack's outputs
into what to run in which guest and what result means pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Expect = Literal["reach", "blocked"]
INTERNET = "internet"


@dataclass(frozen=True)
class Reach:
    """`{from: SRC, to: VM | VM.ethN | internet, expect}`: the guest of `src` pings an address."""

    index: int
    """Its place in `slice.checks` (its name in the table: `checks[index]`)."""
    src: int
    expect: Expect
    dst_vm: int | None = None
    dst_iface: str | None = None
    """The interface of `dst_vm` whose address is pinged (given, or chosen: see `components.checks`)."""
    chosen: bool = False
    """Whether `dst_iface` was chosen rather than written (the table says which)."""
    host: str | None = None
    """With `to: internet`: the address outside the cloud that is pinged."""
    label: str = INTERNET
    """What `host` is, in the table."""


@dataclass(frozen=True)
class Lease:
    """`{vm: VM, lease: ethN}`: the guest holds its reserved address on that interface."""

    index: int
    vm: int
    iface: str


Check = Reach | Lease
