"""Shared pytest setup: the project root on sys.path, the test suite's own testbed (`lab.testenv`), and
the testbed fixtures (tests/labfixtures.py)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lab.testenv import use_test_testbed  # noqa: E402  (before anything imports lab.common)

use_test_testbed()

pytest_plugins = ["tests.labfixtures"]
