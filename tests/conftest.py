"""Every test run drives the test suite's own testbed (`lab.testenv`); the testbed fixtures are in
`tests.labfixtures`."""

from __future__ import annotations

from lab.testenv import use_test_testbed

pytest_plugins = ["tests.labfixtures"]


def pytest_configure() -> None:
    use_test_testbed()
