"""`cloudrepo image add|list|rm` on a file:// backend: other content under a taken name refused (saying how
to replace), kernel files refused, `rm` refused while a deployed slice boots from the image."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import subprocess
from pathlib import Path

import pytest

from cloudrepo import cli
from tests.unit.cloudrepo.fakeslices import FakeSlices


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "Pulumi.yaml").write_text("name: cloudrepo\nruntime: python\n")
    monkeypatch.setattr(cli, "Slices", FakeSlices)
    monkeypatch.setenv("PULUMI_BACKEND_URL", f"file://{tmp_path / 'backend'}")
    FakeSlices.backend, FakeSlices.broken = {}, False
    return tmp_path


def run(root: Path, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["--project", str(root), *argv])
    return code, out.getvalue(), err.getvalue()


def test_add_list_replace_and_rm_guarded_by_the_deployed_slices(root: Path) -> None:
    disk, other = root / "a.qcow2", root / "b.img"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "1M"], check=True)
    other.write_bytes(bytes(512))
    assert run(root, "image", "add", "tiny", str(disk), "--description", "blank")[0] == 0
    code, _, err = run(root, "image", "add", "tiny", str(other))
    assert code == 1 and "exists with other content" in err and "cloudrepo image rm tiny" in err
    assert run(root, "image", "add", "tiny", str(disk))[0] == 0  # the same content again: no change
    assert run(root, "image", "add", "zero", str(other))[0] == 0
    code, out, _ = run(root, "image", "list", "--json")
    listed = {e["name"]: e for e in json.loads(out)}
    assert sorted(listed) == ["tiny", "zero"]
    assert listed["tiny"]["sha256"] == hashlib.sha256(disk.read_bytes()).hexdigest()
    assert (listed["tiny"]["size"], listed["tiny"]["description"]) == (disk.stat().st_size, "blank")
    assert {listed["tiny"]["format"], listed["zero"]["format"]} == {"qcow2", "raw"}
    assert "tiny  qcow2" in run(root, "image", "list")[1]

    image = {"name": "tiny", "sha256": listed["tiny"]["sha256"]}
    FakeSlices.backend = {"alpha": {"vms": {"1002": {"image": image}}}, "beta": {}}
    code, _, err = run(root, "image", "rm", "tiny")
    assert code == 1 and "used by deployed slice(s): alpha (vm 1002)" in err
    FakeSlices.backend = {"alpha": {}, "beta": {}}  # destroyed
    assert run(root, "image", "rm", "tiny") == (0, "image tiny removed\n", "")
    code, _, err = run(root, "image", "rm", "tiny")
    assert code == 1 and "no image named 'tiny'" in err


@pytest.mark.parametrize("path", ["/proc/self/environ", "/dev/zero", "/nonexistent/x", "."])
def test_kernel_files_directories_and_missing_files_are_refused(root: Path, path: str) -> None:
    code, _, err = run(root, "image", "add", "x", path)
    assert code == 1 and repr(path) in err
    assert run(root, "image", "list")[1] == "no images in this backend (cloudrepo image add NAME FILE)\n"
