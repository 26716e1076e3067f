"""Shared pytest setup: the project root on sys.path, and the testbed fixtures (tests/labfixtures.py)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

pytest_plugins = ["tests.labfixtures"]
