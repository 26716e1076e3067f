"""Where state written before the kinds moved to `providers.kinds` finds `VlanGatewayProvider` (a pickled
reference to this module path): it must keep resolving (`providers.legacy`)."""

from providers.legacy import VlanGatewayProvider as VlanGatewayProvider
