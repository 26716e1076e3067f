"""bench/profile.py: spans, the consecutive parts of a run, the gRPC log, CPU of ended processes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench.profile import (
    CpuSampler,
    Proc,
    _segments,
    occupancy,
    priority_split,
    queued_seconds,
    read_grpc_log,
    read_request_starts,
    union_length,
)


def test_union_and_occupancy() -> None:
    spans = [(0.0, 2.0), (1.0, 3.0), (5.0, 6.0)]
    assert union_length(spans) == pytest.approx(4.0)
    assert occupancy(spans, 0.0, 6.0) == pytest.approx({0: 2.0, 1: 3.0, 2: 1.0})
    # 5 calls at once for 1 s with 4 workers: 1 call-second queued
    assert queued_seconds([(0.0, 1.0)] * 5, 4) == pytest.approx(1.0)
    assert queued_seconds([(0.0, 1.0)] * 4, 4) == 0


def test_priority_split_adds_up_to_the_window() -> None:
    layers = [("host", [(1.0, 2.0)]), ("ssh", [(0.5, 2.5)]), ("call", [(0.0, 3.0)])]
    split = priority_split(layers, 0.0, 4.0)
    assert split == pytest.approx({"host": 1.0, "ssh": 1.0, "call": 1.0, "none": 1.0})
    assert sum(split.values()) == pytest.approx(4.0)


def test_segments_add_up_to_the_wall_even_out_of_order() -> None:
    parts = _segments([("a", 0.0), ("b", 1.0), ("missing", None), ("c", 0.5), ("d", 3.0)], 4.0)
    assert [n for n, _ in parts] == ["a", "b", "c", "d"]
    assert [s for _, s in parts] == pytest.approx([1.0, 0.0, 2.0, 1.0])
    assert sum(s for _, s in parts) == pytest.approx(4.0)


def test_grpc_log_client_spans_and_server_calls_without_start(tmp_path: Path) -> None:
    lines = [
        {
            "method": "/pulumirpc.LanguageRuntime/Run",
            "progress": "request_started",
            "timestamp": "2026-11-29T23:41:08.5Z",
        },
        {
            "method": "/pulumirpc.ResourceProvider/Create",
            "progress": "response_completed",
            "timestamp": "2026-11-29T23:41:10.250000000Z",
            "duration": 250_000_000,
        },
        {
            "method": "/pulumirpc.ResourceMonitor/RegisterResource",
            "progress": "response_completed",
            "timestamp": "2026-11-29T23:41:11Z",
            "duration": 9223372036854775807,
        },
    ]
    path = tmp_path / "grpc.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    create, register = read_grpc_log(path)
    assert (create.service, create.method) == ("ResourceProvider", "Create")
    assert create.end - create.start == pytest.approx(0.25)  # type: ignore[operator]
    assert register.start is None and register.end - create.end == pytest.approx(0.75)
    (run,) = read_request_starts(path, "LanguageRuntime/Run")
    assert create.end - run == pytest.approx(1.75)


def sampler_with(procs: dict[int, Proc]) -> CpuSampler:
    s = CpuSampler(root_pid=os.getpid())
    s.procs = dict(procs)
    return s


def test_a_child_reaped_by_a_live_parent_counts_once() -> None:
    parent = Proc("hostcmds", 1, 1, "sh", own=0.1, kids=2.0)
    parent.prev_kids = 1.0  # grew by the child's 1.0 s
    child = Proc("hostcmds", 2, 10, "sh", own=1.0, kids=0.0)
    s = sampler_with({10: parent})
    s._vanished({11: child}, alive={10})
    assert sum(s.group_cpu().values()) == pytest.approx(0.1 + 2.0)  # not 3.1


def test_a_parent_and_child_ending_together_count_once_when_the_survivor_collected_them() -> None:
    engine = Proc("engine", 1, 1, "pulumi", own=1.0, kids=3.0)
    engine.prev_kids = 0.0
    shim = Proc("provider", 2, 10, "sh", own=0.0, kids=0.0)
    python = Proc("provider", 3, 11, "python", own=3.0, kids=0.0)
    s = sampler_with({10: engine})
    s._vanished({11: shim, 12: python}, alive={10})
    cpu = s.group_cpu()
    assert cpu["provider"] == pytest.approx(3.0) and cpu["engine"] == pytest.approx(1.0)


def test_an_orphan_reaped_by_init_is_not_taken_off_the_grandparent() -> None:
    engine = Proc("engine", 1, 1, "pulumi", own=1.0, kids=0.0)  # collected nothing: init reaped python
    shim = Proc("provider", 2, 10, "sh", own=0.0, kids=0.0)
    python = Proc("provider", 3, 11, "python", own=3.0, kids=0.0)
    s = sampler_with({10: engine})
    s._vanished({11: shim, 12: python}, alive={10})
    cpu = s.group_cpu()
    assert cpu["provider"] == pytest.approx(3.0) and cpu["engine"] == pytest.approx(1.0)
