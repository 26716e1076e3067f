"""Where state written before the kinds moved to `providers.kinds` finds `SliceIdentityProvider` (a pickled
reference to this module path): it must keep resolving."""

from providers.kinds.identity import SliceIdentityProvider as SliceIdentityProvider
