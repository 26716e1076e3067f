"""Every test run drives the test suite's own testbed (`lab.testenv`); the testbed fixtures are in
`tests.labfixtures`."""

from __future__ import annotations

import pytest

from lab.testenv import use_test_testbed

pytest_plugins = ["tests.labfixtures"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--cloud-image",
        action="store_true",
        help="also run the tests that build (once) and boot the Debian cloud image (`make test-long`)",
    )


def pytest_configure() -> None:
    use_test_testbed()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The cloud image's tests take minutes (a build, then a TCG boot): only with `--cloud-image`."""
    if config.getoption("--cloud-image"):
        return
    skip = pytest.mark.skip(reason="boots the Debian cloud image: run with --cloud-image (make test-long)")
    for item in items:
        if item.get_closest_marker("cloud_image"):
            item.add_marker(skip)
