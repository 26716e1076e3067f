"""Dynamic providers (TapPort, VlanGateway, DhcpNamespace, NatRule, PoolClaim) and their SSH layer."""
