"""Where state written before the kinds moved to `providers.kinds` finds `VlanGatewayProvider` (a pickled
reference to this module path): it must keep resolving."""

from providers.kinds.vlan_gateway import VlanGatewayProvider as VlanGatewayProvider
