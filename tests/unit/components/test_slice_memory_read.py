"""Reading the allocation memory meets a checkpoint being written now and then: the read is retried."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from components import memory


class Invoke:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self, token: str, args: dict[str, Any], *_: Any, **__: Any) -> Any:
        assert token == memory.READ_STACK_OUTPUTS
        self.calls += 1
        if self.calls <= self.failures:
            raise Exception(
                "invoke of pulumi:pulumi:readStackOutputs failed: invocation of "
                "pulumi:pulumi:readStackOutputs returned an error: failed to load checkpoint: EOF"
            )

        return SimpleNamespace(
            value={
                "name": args["name"],
                "outputs": {"links": [{"endpoints": ["1.eth1", "2.eth1"], "vlan": 120.0}]},
            }
        )


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory.time, "sleep", lambda _s: None)


def test_a_read_that_meets_a_checkpoint_being_written_is_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    invoke = Invoke(failures=2)
    monkeypatch.setattr(memory.pulumi.runtime, "invoke", invoke)
    out = memory.read_previous_outputs("organization/cloudrepo/dev")
    assert out["links"][0]["vlan"] == 120.0
    assert invoke.calls == 3


def test_a_read_that_keeps_failing_is_an_error_naming_the_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    invoke = Invoke(failures=99)
    monkeypatch.setattr(memory.pulumi.runtime, "invoke", invoke)
    with pytest.raises(
        memory.AllocationMemoryError, match=r"organization/cloudrepo/dev.*failed to load checkpoint"
    ):
        memory.read_previous_outputs("organization/cloudrepo/dev")
    assert invoke.calls == memory.READ_ATTEMPTS
