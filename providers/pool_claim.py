"""Where state written before the kinds moved to `providers.kinds` finds `PoolClaimProvider` (a pickled
reference to this module path): it must keep resolving."""

from providers.kinds.pool_claim import PoolClaimProvider as PoolClaimProvider
