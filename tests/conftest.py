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
    parser.addoption(
        "--long",
        action="store_true",
        help="also run the longer scenarios: larger-scale repeats of a shorter test, timings, upgrades from "
        "an older release's state (`make test-long`)",
    )


def pytest_configure() -> None:
    use_test_testbed()


SKIPPED = {
    "cloud_image": ("--cloud-image", "boots the Debian cloud image: run with --cloud-image (make test-long)"),
    "long": ("--long", "a longer scenario: run with --long (make test-long)"),
}
"""marker -> (the option that runs its tests, why they are skipped without it)."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The cloud image's tests (a build, then a TCG boot) and the longer scenarios take minutes: only with
    their option, as `make test-long` runs them."""
    for marker, (option, reason) in SKIPPED.items():
        if config.getoption(option):
            continue
        skip = pytest.mark.skip(reason=reason)
        for item in items:
            if item.get_closest_marker(marker):
                item.add_marker(skip)
