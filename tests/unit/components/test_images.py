"""Named images: names (hostile ones generated), entries, who uses one, the registry on a file:// backend,
and `launch.image` by name."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from components.allocation import allocate_vlans
from components.config import ConfigError, load_config
from components.image_store import FileStore, Registry, StoreError, cached, open_store
from components.images import (
    NAMES_PREFIX,
    ImageEntry,
    add_problem,
    detect_format,
    entry_from_json,
    images_in_outputs,
    is_name,
    name_key,
    name_problem,
    rm_problem,
    users,
)
from components.launch import parse_launches
from components.outputs import vms_output
from components.plan import build_plan
from tests.cfgkit import raw_config, slice_with, with_changes

NAME_CHARS = "abcxyzABZ0189._-"
names = st.text(NAME_CHARS, min_size=1, max_size=64).filter(lambda s: s[0] not in "._-")
hostile = st.one_of(
    st.text(min_size=0, max_size=80),
    st.sampled_from(["", ".", "..", "-rf", "../etc", "a/b", "/abs", "a\x00b", "a b", "x" * 65, "é", "a\nb"]),
)
SHA = "ab" * 32


def entry(name: str = "tiny", sha: str = SHA, **kw: Any) -> ImageEntry:
    return ImageEntry(name=name, sha256=sha, size=kw.pop("size", 16), format=kw.pop("format", "qcow2"), **kw)


@given(names)
def test_every_name_by_the_rule_is_accepted_and_keys_one_file_under_names(name: str) -> None:
    assert name_problem(name) is None
    assert is_name(name)
    key = name_key(name)
    assert key.startswith(NAMES_PREFIX) and "/" not in key[len(NAMES_PREFIX) :]
    assert ".." not in key.split("/")


@given(hostile)
def test_a_hostile_name_is_refused_or_is_a_plain_one(text: str) -> None:
    why = name_problem(text)
    allowed = all(c.isascii() and (c.isalnum() or c in "._-") for c in text)
    plain = 1 <= len(text) <= 64 and allowed and text[0] not in "._-"
    assert (why is None) == plain
    if why is not None:
        assert repr(text) in why and "1..64 letters" in why


@given(names, st.text(alphabet="0123456789abcdef", min_size=64, max_size=64), st.integers(0, 2**50),
       st.sampled_from(["qcow2", "raw"]), st.text(max_size=40))  # fmt: skip
def test_an_entry_survives_its_json(name: str, sha: str, size: int, fmt: Any, text: str) -> None:
    e = ImageEntry(name=name, sha256=sha, size=size, format=fmt, description=text, added="t", added_by="u@h")
    assert entry_from_json(e.to_json()) == e


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=4),
    max_leaves=12,
)


@given(json_values)
def test_anything_that_is_not_an_entry_is_a_value_error(value: Any) -> None:
    with pytest.raises(ValueError, match="not an image entry"):
        entry_from_json(json.dumps(value))


@given(json_values)
def test_garbage_outputs_name_no_users(outputs: Any) -> None:
    found = images_in_outputs({"vms": outputs})
    assert all(isinstance(vm, int) and isinstance(n, str) for vm, n in found.items())


def test_the_same_content_again_is_no_problem_other_content_says_how_to_replace() -> None:
    assert add_problem(None, "tiny", SHA) is None
    assert add_problem(entry(), "tiny", SHA) is None
    why = add_problem(entry(), "tiny", "cd" * 32)
    assert why is not None and "cloudrepo image rm tiny, then image add" in why


def test_users_are_the_deployed_slices_that_boot_a_vm_from_the_image() -> None:
    image = {"name": "tiny", "sha256": SHA}
    stacks: list[tuple[str, dict[str, Any]]] = [
        ("alpha", {"vms": {"1002": {"image": image}, "1003": {"worker": "w"}, "1004": {"image": image}}}),
        ("beta", {"vms": {"1002": {"image": {"name": "other", "sha256": SHA}}}}),
        ("gamma", {}),
    ]
    assert users("tiny", stacks) == ["alpha (vm 1002, 1004)"]
    why = rm_problem("tiny", users("tiny", stacks))
    assert why is not None and "alpha (vm 1002, 1004)" in why
    assert rm_problem("other", []) is None


def test_format_from_the_first_bytes() -> None:
    assert detect_format(b"QFI\xfb\x00\x00") == "qcow2"
    assert detect_format(b"\x00" * 8) == "raw"


def test_the_registry_on_a_file_backend_keeps_bytes_once_and_fetches_them_checked(tmp_path: Path) -> None:
    data = b"QFI\xfb" + bytes(100)
    disk = tmp_path / "disk.qcow2"
    disk.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    reg = Registry(open_store(f"file://{tmp_path / 'backend'}"))
    assert isinstance(reg.store, FileStore)
    reg.add(entry("a", sha, size=len(data)), disk)
    reg.add(entry("b", sha, size=len(data)), disk)
    assert [e.name for e in reg.entries()] == ["a", "b"]
    blobs = list((tmp_path / "backend" / ".cloudrepo" / "images" / "blobs").iterdir())
    assert [b.name for b in blobs] == [sha]
    disk.unlink()  # the registry holds the bytes
    dest = cached(tmp_path / "project", sha)
    reg.fetch("a", sha, dest)
    assert dest.read_bytes() == data and dest.stat().st_mode & 0o777 == 0o600
    reg.remove(entry("a", sha))
    assert blobs[0].exists()  # b still names the content
    reg.remove(entry("b", sha))
    assert not blobs[0].exists() and reg.entries() == [] and reg.lookup("b") is None


def test_a_fetch_whose_bytes_differ_or_are_gone_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    reg = Registry(open_store(f"file://{tmp_path}"))
    blob = tmp_path / ".cloudrepo" / "images" / "blobs" / SHA
    dest = tmp_path / "cache" / SHA
    with pytest.raises(StoreError, match="missing from the backend"):
        reg.fetch("tiny", SHA, dest)
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"tampered")
    with pytest.raises(StoreError, match=f"not {SHA}"):
        reg.fetch("tiny", SHA, dest)
    assert list(dest.parent.iterdir()) == []


def test_a_backend_that_is_no_file_or_s3_store_is_named() -> None:
    with pytest.raises(StoreError, match="file:// or s3://"):
        open_store("https://api.pulumi.com")


# ---- launch.image by name


def config_with(image: str) -> dict[str, Any]:
    vms = [{"id": 1002, "worker": "worker1", "dataInterfaces": 1, "launch": {"image": image}}]
    return with_changes(slice=slice_with(vms=vms, links=[], topology=[]))


def test_a_name_resolves_to_the_registry_entry_without_reading_bytes(tmp_path: Path) -> None:
    values = {"slice": config_with("tiny")["cloudrepo:slice"]}
    problems: list[str] = []
    launches = parse_launches(values, tmp_path, problems.append, {"tiny": entry(format="raw")}.get)
    assert problems == []
    image = launches[1002].image
    assert image is not None and launches[1002].image_format == "raw"
    assert (image.registry, image.sha256, image.local) == ("tiny", SHA, str(cached(tmp_path, SHA)))
    assert not Path(image.local).exists()


@given(st.text(max_size=70).filter(lambda s: "/" not in s))
def test_any_value_without_a_slash_is_a_name_known_or_refused_at_its_key(text: str) -> None:
    values = {"slice": config_with(text)["cloudrepo:slice"]}
    problems: list[str] = []
    parse_launches(values, Path("/nonexistent"), problems.append, {"tiny": entry()}.get)
    if text == "tiny":
        assert problems == []
    else:
        assert len(problems) == 1 and problems[0].startswith("cloudrepo:slice.vms[0].launch.image: ")
        assert repr(text) in problems[0]


def test_an_unreadable_registry_is_a_problem_at_the_key(tmp_path: Path) -> None:
    def broken(name: str) -> ImageEntry | None:
        raise StoreError("no Pulumi backend: set PULUMI_BACKEND_URL or run pulumi login")

    values = {"slice": config_with("tiny")["cloudrepo:slice"]}
    problems: list[str] = []
    parse_launches(values, tmp_path, problems.append, broken)
    assert problems == [
        "cloudrepo:slice.vms[0].launch.image: cannot read the image registry for 'tiny': no Pulumi backend: "
        "set PULUMI_BACKEND_URL or run pulumi login"
    ]


def test_preview_reads_the_backend_registry_and_the_outputs_name_the_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = tmp_path / "backend"
    monkeypatch.setenv("PULUMI_BACKEND_URL", f"file://{backend}")
    disk = tmp_path / "d.qcow2"
    disk.write_bytes(b"QFI\xfb1234")
    sha = hashlib.sha256(disk.read_bytes()).hexdigest()
    Registry(open_store()).add(entry("tiny", sha), disk)
    config = load_config(raw_config(config_with("tiny")), "dev", tmp_path)
    plan = build_plan(config, allocate_vlans(config.links, config.pool, {}))
    assert vms_output(plan)["1002"]["image"] == {"name": "tiny", "sha256": sha}
    with pytest.raises(ConfigError) as err:
        load_config(raw_config(config_with("nosuch")), "dev", tmp_path)
    assert any("no image named 'nosuch'" in p for p in err.value.problems)


def test_the_program_fetch_of_bytes_gone_from_the_backend_is_a_config_error_naming_the_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from components.bootfiles import BootFile
    from components.vm_resources import fetch_named

    monkeypatch.setenv("PULUMI_BACKEND_URL", f"file://{tmp_path / 'backend'}")
    file = BootFile(local=str(cached(tmp_path, SHA)), sha256=SHA, registry="tiny")
    with pytest.raises(ConfigError) as err:
        fetch_named(file)
    assert err.value.problems == ["image 'tiny': its bytes are missing from the backend"]
    assert not Path(file.local).exists()
