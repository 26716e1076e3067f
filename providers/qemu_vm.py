"""Where state written before the kinds moved to `providers.kinds` finds `QemuVmProvider` (a pickled
reference to this module path): it must keep resolving (`providers.legacy`)."""

from providers.legacy import QemuVmProvider as QemuVmProvider
