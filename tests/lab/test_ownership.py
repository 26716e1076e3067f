"""A testbed directory never takes over (or takes down) the namespaces another directory's testbed made."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab.common import settings
from tests.labfixtures import ROOT, Testbed, assert_scan_equal, scan

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("command", ["up", "down"])
def test_another_directory_is_refused(testbed: Testbed, tmp_path: Path, command: str) -> None:
    before = scan()
    env = {**os.environ, "CLOUDREPO_LAB_DIR": str(tmp_path / "other")}
    proc = subprocess.run(
        [sys.executable, "-m", "lab", command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    lab = settings()
    assert proc.stderr.strip() == (
        f"lab: error: the {lab.prefix}* namespaces belong to the testbed of {lab.dir}: take it down there "
        f"(CLOUDREPO_LAB_DIR={lab.dir} python -m lab down) or choose another CLOUDREPO_LAB_PREFIX"
    )
    assert_scan_equal(before, scan())
