"""The test suite's own testbed: a directory, namespace prefixes and ports apart from the demo's.

`make demo` uses `.lab`, prefixes `lab-`/`vm-` and ports from 2200; a test run uses `.lab-test`, `lt-`/`vt-`
and ports from 2300, so it passes whether or not the demo is up and never changes it. Variables the caller
set win (several test runs on one machine, each with its own four values). No import of `lab.common` here:
it reads these variables when it is imported, so they are set first (`tests/conftest.py`).
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

from lab import PROJECT_ROOT

TEST_TESTBED = {
    "CLOUDREPO_LAB_DIR": str(PROJECT_ROOT / ".lab-test"),
    "CLOUDREPO_LAB_PREFIX": "lt-",
    "CLOUDREPO_LAB_VM_PREFIX": "vt-",
    "CLOUDREPO_LAB_PORT": "2300",
}


def use_test_testbed(environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Point `environ` at the test testbed where the caller chose nothing; the values now in force."""
    for key, value in TEST_TESTBED.items():
        environ.setdefault(key, value)
    return {key: environ[key] for key in TEST_TESTBED}
