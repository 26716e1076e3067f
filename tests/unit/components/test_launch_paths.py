"""Boot files come only from the operator's `qemu.imageDirs`: generated path attacks (`..`, symlinks out,
`~`, absolute paths, pseudo-files, FIFOs, directories) against a project tree with secrets beside the
images; and the hostile `binary` and `append` strings the config refuses at preview."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from components.bootfiles import IMAGE_DIRS_KEY, ImageDirs, boot_file, parse_image_dirs
from components.config import load_config
from components.launch import parse_qemu
from tests.cfgkit import raw_config, slice_with, with_changes
from vocabulary.errors import ConfigError
from vocabulary.specs import BINARY_PATTERN

WHERE = "cloudrepo:slice.vms[0].launch.kernel"
ALLOWED = {"images/ok.bin": b"kernel", "images/sub/ok2": b"initrd", ".lab/guest/vmlinuz": b"guest"}
SECRETS = {
    ".lab/id_ed25519": b"-----BEGIN OPENSSH PRIVATE KEY-----",
    ".git/config": b"[core]",
    ".pulumi-state/stack.json": b"{}",
    "Pulumi.dev.yaml": b"config:",
    "outside/secret": b"outside",
}


@pytest.fixture(scope="module")
def project() -> Iterator[Path]:
    """A project directory: boot files in images/ and .lab/guest/, secrets beside them, and traps."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "project"
        for rel, data in {**ALLOWED, **SECRETS}.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
        images = root / "images"
        (images / "link_in").symlink_to("ok.bin")
        (images / "link_out").symlink_to("../.lab/id_ed25519")
        (images / "link_abs").symlink_to(root / "outside" / "secret")
        (images / "link_dir").symlink_to("../.git")
        (images / "link_proc").symlink_to("/proc/self/environ")
        (images / "loop").symlink_to("loop")
        (images / "dir").mkdir()
        os.mkfifo(images / "fifo")
        yield root


def dirs_of(root: Path) -> ImageDirs:
    problems: list[str] = []
    dirs = parse_image_dirs(None, root, problems.append)
    assert dirs is not None and problems == []
    return dirs


def check(text: str, root: Path) -> tuple[Any, list[str]]:
    problems: list[str] = []
    return boot_file(text, WHERE, root, dirs_of(root), problems.append), problems


PARTS = [
    "images",
    "..",
    ".",
    "ok.bin",
    "sub",
    "ok2",
    "link_in",
    "link_out",
    "link_abs",
    "link_dir",
    "link_proc",
    "loop",
    "dir",
    "fifo",
    "config",
    ".lab",
    "id_ed25519",
    "guest",
    "vmlinuz",
    ".git",
    ".pulumi-state",
    "stack.json",
    "outside",
    "secret",
    "Pulumi.dev.yaml",
    "~",
    "",
    "proc",
    "self",
    "environ",
    "dev",
    "null",
]


@st.composite
def attack(draw: st.DrawFn, root: Path) -> str:
    parts = draw(st.lists(st.sampled_from(PARTS), min_size=1, max_size=7))
    head = draw(st.sampled_from(["", "/", f"{root}/", "~/", "~root/", "/proc/", "/sys/", "/dev/", "./"]))
    return head + "/".join(parts)


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_generated_paths_reach_only_regular_files_inside_image_dirs(project: Path, data: Any) -> None:
    """Whatever path a slice writes: accepted means a regular file inside `images/` or `.lab/guest/`
    (symlinks resolved) whose content is hashed; refused means one problem naming the key and the path."""
    text = data.draw(attack(project))
    found, problems = check(text, project)
    if found is None:
        assert len(problems) == 1 and problems[0].startswith(f"{WHERE}: ")
        assert repr(text) in problems[0]
        return
    assert problems == []
    real = Path(found.local)
    assert real == real.resolve() and real.is_file() and not real.is_symlink()
    assert any(real.is_relative_to(project / d) for d in ("images", ".lab/guest"))
    content = real.read_bytes()
    assert content in ALLOWED.values() and content not in SECRETS.values()
    assert found.sha256 == hashlib.sha256(content).hexdigest()


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("~/images/ok.bin", "'~' is not expanded"),
        ("~root/.ssh/id_ed25519", "'~' is not expanded"),
        ("/proc/self/environ", "is outside cloudrepo:qemu.imageDirs ('images', '.lab/guest')"),
        ("/sys/kernel/notes", "is outside"),
        ("/dev/zero", "is outside"),
        ("/etc/passwd", "is outside"),
        (".lab/id_ed25519", "is outside"),
        ("images/../.lab/id_ed25519", "is outside"),
        ("images/link_out", "which resolves to"),
        ("images/link_abs", "which resolves to"),
        ("images/link_dir/config", "which resolves to"),
        ("images/link_proc", "which resolves to '/proc/"),
        ("images/fifo", "'images/fifo' is not a regular file"),
        ("images/dir", "'images/dir' is not a regular file"),
        ("images/loop", "'images/loop' is not a regular file"),
        ("images/nope", "no such file 'images/nope'"),
        ("images/ok.bin\n", "not a usable file path"),
        ("images/\x1bok.bin", "not a usable file path"),
        ("", "not a usable file path"),
    ],
)
def test_refused_paths_name_the_key_and_the_path(project: Path, text: str, why: str) -> None:
    found, problems = check(text, project)
    assert found is None and len(problems) == 1, problems
    assert problems[0].startswith(f"{WHERE}: ") and why in problems[0], problems[0]


def test_allowed_paths(project: Path) -> None:
    for text in (
        "images/ok.bin",
        "images/link_in",
        "./images/sub/../ok.bin",
        f"{project}/.lab/guest/vmlinuz",
    ):
        found, problems = check(text, project)
        assert problems == [] and found is not None, (text, problems)
    found, _ = check("images/link_in", project)
    assert found.local == str(project / "images" / "ok.bin")


def test_image_dirs_are_the_operators(project: Path) -> None:
    """Other directories (absolute, `~`); never one that holds the whole project; problems named."""
    problems: list[str] = []
    custom = parse_image_dirs([str(project / "outside")], project, problems.append)
    assert custom is not None and problems == []
    found = boot_file("outside/secret", WHERE, project, custom, problems.append)
    assert found is not None and problems == []
    assert boot_file("images/ok.bin", WHERE, project, custom, problems.append) is None
    assert "is outside cloudrepo:qemu.imageDirs" in problems[-1]
    for bad, why in (
        (["."], "holds the whole project directory"),
        (["/"], "holds the whole project directory"),
        (["images/../.."], "holds the whole project directory"),
        ([], "must be a non-empty list"),
        ("images", "must be a non-empty list"),
        ([3], "must be a non-empty list"),
        (["images", "bad\npath"], "not a usable directory path"),
    ):
        problems = []
        assert parse_image_dirs(bad, project, problems.append) is None
        assert len(problems) == 1 and problems[0].startswith(IMAGE_DIRS_KEY) and why in problems[0], problems


def test_a_refused_boot_file_fails_the_whole_config_at_preview(project: Path) -> None:
    vms = [{"id": 1002, "worker": "worker1", "dataInterfaces": 0, "launch": {"kernel": ".lab/id_ed25519"}}]
    cfg = with_changes(slice=slice_with(vms=vms, links=[]), qemu={"imageDirs": ["images", "/"]})
    with pytest.raises(ConfigError) as err:
        load_config(raw_config(cfg), "dev", project)
    assert err.value.problems[0].startswith("cloudrepo:qemu.imageDirs[1]: '/' holds the whole project")
    cfg = with_changes(slice=slice_with(vms=vms, links=[]))
    with pytest.raises(ConfigError) as err:
        load_config(raw_config(cfg), "dev", project)
    assert err.value.problems == [
        f"{WHERE}: '.lab/id_ed25519' is outside cloudrepo:qemu.imageDirs ('images', '.lab/guest')"
    ]


@settings(max_examples=300, deadline=None)
@given(binary=st.text(max_size=30) | st.sampled_from(["eval", "-x", "./q", "q;id", "$(id)", "a b", "/x y"]))
def test_hostile_binaries_are_refused_at_preview_or_are_plain_words(binary: str) -> None:
    """A `qemu.binary` is accepted only as a plain command name or absolute path (no shell syntax, no
    option); a refusal names the key and the value. (Built-ins such as `eval` are plain words: `up`
    refuses them on the worker.)"""
    problems: list[str] = []
    q = parse_qemu({"binary": binary}, problems.append)
    if q is not None:
        assert re.fullmatch(BINARY_PATTERN, binary) and problems == []
        assert not set(binary) & set(" \t\n;&|<>()$`'\"\\*?[]#~=%!{}") and not binary.startswith(("-", "."))
    else:
        assert len(problems) == 1 and problems[0].startswith("cloudrepo:qemu.binary: ")
        assert repr(binary) in problems[0]


@settings(max_examples=200, deadline=None)
@given(
    head=st.text(max_size=20),
    bad=st.characters(blacklist_categories=("L", "M", "N", "P", "S", "Zs")),
    tail=st.text(max_size=20),
)
def test_appends_with_control_characters_are_refused_at_preview(
    tmp_path_factory: pytest.TempPathFactory, head: str, bad: str, tail: str
) -> None:
    """A kernel command line with a line break or any other control character never reaches a host: it
    is a config problem naming `launch.append`."""
    base = tmp_path_factory.getbasetemp()
    (base / "images").mkdir(exist_ok=True)
    (base / "images" / "k").write_bytes(b"k")
    append = head + bad + tail
    vms = [{"id": 1002, "worker": "worker1", "launch": {"kernel": "images/k", "append": append}}]
    with pytest.raises(ConfigError) as err:
        load_config(raw_config(with_changes(slice=slice_with(vms=vms, links=[]))), "dev", base)
    assert any(
        p.startswith("cloudrepo:slice.vms[0].launch.append: printable text") for p in err.value.problems
    )


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(max_size=40)
    | st.builds(lambda n, c: "images/" + c * n, st.integers(200, 5000), st.sampled_from("a/.~"))
    | st.lists(st.sampled_from(["images", "..", "a" * 255, "a" * 256, "\udcff", "ok.bin"]), max_size=6).map(
        "/".join
    ),
    dirs=st.none() | st.lists(st.text(max_size=12), max_size=3) | st.integers() | st.text(max_size=5),
)
def test_any_text_is_an_answer_never_an_exception(project: Path, text: str, dirs: Any) -> None:
    """Any boot-file text and any `imageDirs` value (long names, surrogates, wrong types): a result or
    problems naming their key, never an exception."""
    problems: list[str] = []
    image_dirs = parse_image_dirs(dirs, project, problems.append)
    assert image_dirs is not None or (all(p.startswith(IMAGE_DIRS_KEY) for p in problems) and problems)
    found = boot_file(text, WHERE, project, image_dirs or dirs_of(project), problems.append)
    assert found is not None or problems[-1].startswith(f"{WHERE}: ")
