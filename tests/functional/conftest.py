"""The `lab` fixture of the provider-level tests: the testbed, no pooled SSH connection before or after."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.labfixtures import Testbed
from transport import ssh


@pytest.fixture
def lab(testbed: Testbed) -> Iterator[Testbed]:
    ssh.close_all()
    yield testbed
    ssh.close_all()
