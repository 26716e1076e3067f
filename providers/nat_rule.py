"""Where state written before the kinds moved to `providers.kinds` finds `NatRuleProvider` (a pickled
reference to this module path): it must keep resolving."""

from providers.kinds.nat_rule import NatRuleProvider as NatRuleProvider
