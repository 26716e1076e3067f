"""The test suite's own testbed: a directory, namespace prefixes and ports apart from the demo's.

`make demo` uses `.lab`, prefixes `lab-`/`vm-` and ports from 2200; a test run uses `.lab-test`, `lt-`/`vt-`
and ports from 2300, so it passes whether or not the demo is up and never changes it. Variables the caller
set win (several test runs on one machine, each with its own four values).
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

from lab import PROJECT_ROOT
from lab.common import DIR_VAR, PORT_VAR, PREFIX_VAR, VM_PREFIX_VAR, LabSettings, settings

TEST_TESTBED = {
    DIR_VAR: str(PROJECT_ROOT / ".lab-test"),
    PREFIX_VAR: "lt-",
    VM_PREFIX_VAR: "vt-",
    PORT_VAR: "2300",
}


def use_test_testbed(environ: MutableMapping[str, str] = os.environ) -> LabSettings:
    """Point `environ` at the test testbed where the caller chose nothing; the settings now in force."""
    for key, value in TEST_TESTBED.items():
        environ.setdefault(key, value)
    return settings(environ)
