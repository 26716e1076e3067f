"""`cloudrepo snapshot restore`'s checks come before any change: another deployment's snapshot, a boot file
changed since, and running VMs without `--force` are refused naming the reason, with no worker program
run but the check, the stack file as it was and no `up`; with `--force` the disks are reverted on each
worker, the saved config is written back and one `up` runs. The engine and the workers are stand-ins."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from cloudrepo import snapshot as sn
from cloudrepo import snapshots
from cloudrepo.engine import SliceError

MARK = "lab42+" + "ab" * 16


class Engine:
    def __init__(self, project: Path) -> None:
        self.project = project
        self.runs: list[tuple[str, str]] = []

    def outputs(self, name: str) -> dict[str, Any]:
        return {"vms": {"1002": {"worker": "worker1", "console": "/c"}}}

    def run(self, verb: str, name: str, out: Any) -> None:
        self.runs.append((verb, name))


def spec(image: str) -> Any:
    ref = SimpleNamespace(sha256=image)
    return SimpleNamespace(spec=SimpleNamespace(vm=1002, kernel=None, initrd=None, image=ref))


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    engine = Engine(tmp_path)
    stack = tmp_path / "Pulumi.lab42.yaml"
    stack.write_text("config:\n  cloudrepo:slice: {edited: true}\n")
    d = snapshots.store(tmp_path, "lab42") / "s1"
    d.mkdir(parents=True)
    (d / sn.CONFIG).write_text("config:\n  cloudrepo:slice: {saved: true}\n")
    m = sn.Manifest("s1", "lab42", MARK, "t", (sn.VmSnap(1002, "worker1", True, 10, {"image": "a" * 64}),))
    (d / sn.MANIFEST).write_text(m.dump())
    state: dict[str, Any] = {"mark": MARK, "image": "a" * 64, "running": True, "calls": []}
    monkeypatch.setattr(
        snapshots, "_mark", lambda *_: (state["mark"], SimpleNamespace(vms=[spec(state["image"])]))
    )

    def run(self: Any, worker: str, argv: list[str]) -> tuple[int, str, str]:
        state["calls"].append(argv)
        return 0, "running=1002\n" if state["running"] and "running=" in argv[2] else "", ""

    monkeypatch.setattr(snapshots.Workers, "run", run)
    return {"engine": engine, "stack": stack, "state": state}


def restore(world: dict[str, Any], force: bool) -> None:
    snapshots.restore(world["engine"], "lab42", "s1", force, lambda _: None)


def unchanged(world: dict[str, Any]) -> bool:
    return "edited" in world["stack"].read_text() and world["engine"].runs == []


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"mark": "lab42+" + "cd" * 16}, "was saved by slice 'lab42' (uid abab"),
        ({"image": "b" * 64}, "vm 1002's image is no longer the file it was saved with"),
        ({}, "VM(s) 1002 (worker1) are running: their disks' changes since the snapshot would be lost"),
    ],
)
def test_a_refused_restore_changes_nothing(
    world: dict[str, Any], change: dict[str, str], reason: str
) -> None:
    world["state"].update(change)
    with pytest.raises(SliceError, match="nothing was changed") as exc:
        restore(world, force=False)
    assert reason in str(exc.value)
    assert unchanged(world)
    assert all(
        "restored=" not in " ".join(a) and "disk.qcow2.new" not in a[2] for a in world["state"]["calls"]
    )


def test_restore_with_force_reverts_writes_the_config_and_deploys_once(world: dict[str, Any]) -> None:
    restore(world, force=True)
    calls = world["state"]["calls"]
    assert len(calls) == 2 and "disk.qcow2.new" in calls[1][2] and calls[1][-1] == "1002"
    assert "saved" in world["stack"].read_text()
    assert world["engine"].runs == [("up", "lab42")]


def test_a_stopped_slice_needs_no_force(world: dict[str, Any]) -> None:
    world["state"]["running"] = False
    restore(world, force=False)
    assert world["engine"].runs == [("up", "lab42")]


def test_an_unknown_snapshot_names_the_known_ones(world: dict[str, Any]) -> None:
    with pytest.raises(SliceError, match=r"has no snapshot 'nope' \(its snapshots: s1\)"):
        snapshots.restore(world["engine"], "lab42", "nope", True, lambda _: None)
    assert unchanged(world)
