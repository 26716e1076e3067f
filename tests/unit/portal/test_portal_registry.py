"""The portal's image administration (`cloudrepo.portal.registry`) on a file:// registry and a real SQLite
database, with the engine's slices faked: the files offered stay inside the allowed directories, a removal
is refused naming the deployed slices that boot from the image, and each change is audited."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.orm import sessionmaker

from cloudrepo.engine import SliceError
from cloudrepo.portal import accounts, audit, db, migrate, registry
from cloudrepo.portal.db import User
from cloudrepo.portal.service import Cloud, Portal, Refused
from components.bootfiles import parse_image_dirs
from components.image_store import FileStore, Registry


class Slices:
    """The engine's stacks and their outputs, as a test sets them."""

    def __init__(self, outputs: dict[str, dict[str, Any]]) -> None:
        self.deployed = outputs

    def names(self) -> list[str]:
        return sorted(self.deployed)

    def outputs(self, name: str) -> dict[str, Any]:
        return self.deployed[name]


class RegistryPortal(Portal):
    """A portal on a file:// registry and faked slices (no engine)."""

    def __init__(self, project: Path, sessions: sessionmaker, store: Registry) -> None:
        self.project, self.cloud, self.db = project, Cloud(), sessions
        self.slices = Slices({})  # type: ignore[assignment]
        self.store = store

    def registry(self) -> Registry:
        return self.store


@pytest.fixture
def portal(tmp_path: Path) -> RegistryPortal:
    url = f"sqlite:///{tmp_path / 'portal.db'}"
    migrate.upgrade(url)
    (tmp_path / "project" / "images").mkdir(parents=True)
    p = RegistryPortal(tmp_path / "project", db.sessions(url), Registry(FileStore(tmp_path / "backend")))
    with p.session() as s:
        accounts.add_user(s, "boss", "admin", "a password")
        accounts.add_user(s, "ann", "student", "a password")
    return p


def user(p: Portal, name: str) -> User:
    with p.session() as s:
        return accounts.find_user(s, name)


def test_a_removal_is_refused_while_a_deployed_slice_boots_from_the_image(portal: RegistryPortal) -> None:
    boss, ann = user(portal, "boss"), user(portal, "ann")
    disk = portal.project / "images" / "disk.raw"
    disk.write_bytes(b"\1" * 2048)
    entry = registry.add(portal, boss, "disk", "images/disk.raw", "two KiB")
    assert entry.added_by == "boss (portal)" and entry.format == "raw"
    with pytest.raises(Refused) as no:
        registry.add(portal, ann, "other", "images/disk.raw")
    assert no.value.status == 403
    slices: Slices = portal.slices  # type: ignore[assignment]
    slices.deployed = {"lab1": {"vms": {"4": {"image": {"name": "disk"}}}}, "lab2": {}}
    with pytest.raises(SliceError, match=r"used by deployed slice\(s\): lab1 \(vm 4\)"):
        registry.remove(portal, boss, "disk")
    assert [e.name for e in registry.listed(portal)] == ["disk"]
    slices.deployed = {"lab2": {}}
    assert registry.remove(portal, boss, "disk").sha256 == entry.sha256
    assert registry.listed(portal) == []
    with portal.session() as s:
        actions = [(e["actor"], e["action"]) for e in audit.entries(s)]
    assert actions == [("boss", "image rm"), ("boss", "image add")]


def test_the_files_offered_are_inside_the_image_directories(tmp_path: Path) -> None:
    images = tmp_path / "images"
    (images / "a" / "b" / "c").mkdir(parents=True)
    (images / "top.qcow2").write_bytes(b"x")
    (images / "a" / "b" / "deep.raw").write_bytes(b"x")
    (images / "a" / "b" / "c" / "too-deep.raw").write_bytes(b"x")
    (images / ".hidden").write_bytes(b"x")
    (images / "out").symlink_to("/etc/hostname")
    (images / "in").symlink_to(images / "top.qcow2")
    os.mkfifo(images / "fifo")
    dirs = parse_image_dirs(["images"], tmp_path, pytest.fail)
    assert dirs is not None
    found = registry.files(dirs)
    assert [Path(f).relative_to(images).as_posix() for f in found] == ["in", "top.qcow2", "a/b/deep.raw"]


@given(st.lists(st.sampled_from(["images", "../x", "/", "~", "", "images/..", "nested/dir"]), max_size=3))
def test_the_cloud_s_image_dirs_are_read_as_the_program_reads_them(texts: list[str]) -> None:
    project = Path("/nonexistent/project")
    cloud = Cloud(plain={"cloudrepo:qemu": {"imageDirs": texts}} if texts else {})
    problems: list[str] = []
    wanted = parse_image_dirs(texts or None, project, problems.append)
    if wanted is None:
        with pytest.raises(Refused) as refused:
            registry.image_dirs(cloud, project)
        assert refused.value.status == 409
        assert refused.value.problems == [f"the portal's cloud: {p}" for p in problems]
    else:
        assert registry.image_dirs(cloud, project) == wanted
