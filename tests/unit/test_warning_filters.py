"""pytest's warning filters (pyproject): a deprecation raised in our own code fails the test that hit it."""

from __future__ import annotations

import warnings

import pytest


@pytest.mark.parametrize("category", [DeprecationWarning, PendingDeprecationWarning])
def test_a_deprecation_in_our_code_is_an_error(category: type[Warning]) -> None:
    with pytest.raises(category, match=r"^old call$"):
        warnings.warn("old call", category, stacklevel=1)


def test_pulumi_commands_import_time_copyfile_warning_is_not_ours() -> None:
    with warnings.catch_warnings(record=True) as seen:
        warnings.warn_explicit(
            "This resource is deprecated and will be removed in a future release.",
            DeprecationWarning,
            "copy_file.py",
            91,
            module="pulumi_command.remote.copy_file",
        )
    assert seen == []
