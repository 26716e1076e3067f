"""Where state written before the kinds moved to `providers.kinds` finds `DhcpNamespaceProvider` (a pickled
reference to this module path): it must keep resolving."""

from providers.kinds.dhcp_namespace import DhcpNamespaceProvider as DhcpNamespaceProvider
