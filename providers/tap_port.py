"""Where state written before the kinds moved to `providers.kinds` finds `TapPortProvider` (a pickled
reference to this module path): it must keep resolving."""

from providers.kinds.tap_port import TapPortProvider as TapPortProvider
