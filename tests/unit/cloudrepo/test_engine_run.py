"""`Slices.run` starts a run again when it met the checkpoint half written by another run of the stack
(nothing applied), reports the lock of a run in progress, and reports any other failure at once; the reads
of every verb (`outputs`, `last_update`) are tried again the same way."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pulumi import automation as auto
from pulumi.automation._cmd import CommandResult

from cloudrepo import engine
from cloudrepo.engine import SliceError, Slices

HALF_WRITTEN = "error: failed to load checkpoint: EOF"
LOCKED = "error: the stack is currently locked by 1 lock(s). Either wait for the other process(es) to end"
OTHER = "error: update failed"


def engine_error(stderr: str) -> auto.CommandError:
    return auto.CommandError(CommandResult("", stderr, 255))


def failing(*stderrs: str) -> tuple[Slices, list[str]]:
    """Slices whose runs fail with `stderrs` in turn, then succeed; the verbs run."""
    calls: list[str] = []
    slices = object.__new__(Slices)

    def run_once(verb: str, _name: str, _out: Callable[[str], None]) -> Any:
        calls.append(verb)
        if len(calls) <= len(stderrs):
            raise engine_error(stderrs[len(calls) - 1])
        return "result"

    slices._run_once = run_once  # type: ignore[method-assign,assignment]
    return slices, calls


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine.time, "sleep", lambda _s: None)


@given(st.sampled_from(["preview", "up", "destroy"]), st.integers(0, engine.ATTEMPTS - 1))
def test_a_run_that_met_a_checkpoint_being_written_is_started_again(verb: str, met: int) -> None:
    slices, calls = failing(*[HALF_WRITTEN] * met)
    assert slices.run(verb, "s", print) == "result"
    assert calls == [verb] * (met + 1)


@given(st.integers(0, engine.ATTEMPTS - 1))
def test_the_lock_of_a_run_in_progress_is_reported_once_reached(met: int) -> None:
    slices, calls = failing(*[HALF_WRITTEN] * met, LOCKED)
    with pytest.raises(SliceError, match=r"slice 's' is locked: another deploy or destroy of it is running"):
        slices.run("up", "s", print)
    assert len(calls) == met + 1


def test_a_checkpoint_unreadable_every_time_is_reported() -> None:
    slices, calls = failing(*[HALF_WRITTEN] * engine.ATTEMPTS)
    with pytest.raises(SliceError, match=r"up of slice 's' failed:\n.*failed to load checkpoint"):
        slices.run("up", "s", print)
    assert len(calls) == engine.ATTEMPTS


def test_any_other_failure_is_reported_at_once() -> None:
    slices, calls = failing(OTHER)
    with pytest.raises(SliceError, match="update failed"):
        slices.run("up", "s", print)
    assert calls == ["up"]


def reading(*stderrs: str) -> tuple[Slices, list[str]]:
    """Slices whose engine reads (outputs, history) fail with `stderrs` in turn, then succeed."""
    calls: list[str] = []

    def read(what: str, value: Any) -> Callable[..., Any]:
        def call(*_args: Any, **_kwargs: Any) -> Any:
            calls.append(what)
            if len(calls) <= len(stderrs):
                raise engine_error(stderrs[len(calls) - 1])
            return value

        return call

    update = SimpleNamespace(kind="update", result="succeeded", end_time=None)
    slices = object.__new__(Slices)
    slices.ws = SimpleNamespace(stack_outputs=read("outputs", {"k": auto.OutputValue("v", False)}))  # type: ignore[assignment]
    slices.stack = lambda _name: SimpleNamespace(history=read("history", [update]))  # type: ignore[method-assign,assignment,return-value]
    return slices, calls


@given(st.integers(0, engine.ATTEMPTS - 1))
def test_a_read_that_met_a_checkpoint_being_written_is_tried_again(met: int) -> None:
    slices, calls = reading(*[HALF_WRITTEN] * met)
    assert slices.outputs("s") == {"k": "v"}
    assert calls == ["outputs"] * (met + 1)
    slices, calls = reading(*[HALF_WRITTEN] * met)
    assert slices.last_update("s") == engine.Update(kind="update", result="succeeded", end=None)
    assert calls == ["history"] * (met + 1)


@given(st.sampled_from([OTHER, LOCKED]))
def test_a_read_that_failed_otherwise_is_not_tried_again(stderr: str) -> None:
    slices, calls = reading(stderr)
    with pytest.raises(auto.CommandError):
        slices.outputs("s")
    assert calls == ["outputs"]


def test_a_checkpoint_unreadable_at_every_read_is_raised() -> None:
    slices, calls = reading(*[HALF_WRITTEN] * engine.ATTEMPTS)
    with pytest.raises(auto.CommandError, match="failed to load checkpoint"):
        slices.last_update("s")
    assert calls == ["history"] * engine.ATTEMPTS
