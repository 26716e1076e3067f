"""The provider class paths the state referred to before `providers.pipeline.HostProvider` was the one
entry point: `providers.<kind>.<Kind>Provider` (code before the kinds moved to `providers.kinds`) and
`providers.kinds.<kind>.<Kind>Provider` (the move). A resource deployed then carries, in its `__provider`
input and output, a dill pickle of an instance of such a class with an empty instance dict: a reference to
the class, unpickled by calling `cls.__new__(cls)` (the NEWOBJ opcode) and nothing more.

Each name here is a tiny class that only fixes the kind's name: calling it, or unpickling an old blob that
names it, gives `HostProvider(<kind>)`, an instance of the stable class, so old state runs as that kind with
today's code (and is written back with the stable reference at its next update). The modules at those
paths re-export these names; they must keep resolving for as long as any state may hold them.
"""

from __future__ import annotations

from typing import ClassVar

from providers.pipeline import HostProvider


class LegacyProvider:
    """A legacy provider class path: an instance of it is never made, only `HostProvider(kind)`."""

    kind: ClassVar[str]

    def __new__(cls) -> HostProvider:  # type: ignore[misc]  # the stable class, by design (see module)
        return HostProvider(cls.kind)


class TapPortProvider(LegacyProvider):
    kind = "TapPort"


class VlanGatewayProvider(LegacyProvider):
    kind = "VlanGateway"


class DhcpNamespaceProvider(LegacyProvider):
    kind = "DhcpNamespace"


class NatRuleProvider(LegacyProvider):
    kind = "NatRule"


class PoolClaimProvider(LegacyProvider):
    kind = "PoolClaim"


class QemuVmProvider(LegacyProvider):
    kind = "QemuVm"
