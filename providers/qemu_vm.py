"""Where state written before the kinds moved to `providers.kinds` finds `QemuVmProvider` (a pickled
reference to this module path): it must keep resolving."""

from providers.kinds.qemu_vm import QemuVmProvider as QemuVmProvider
