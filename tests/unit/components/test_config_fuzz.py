"""Every bad input is an answer: one field of a valid stack config at a time (a leaf or a whole object) is
replaced by hostile input, deleted, given an unknown key, or its raw text garbled, and what `pulumi preview`
runs on it (`components.prepare`: the config, the launches and their boot files, the plan) either accepts it
or raises one `ConfigError` whose problems name the mutated key path and show its value (never key text) —
never another exception, never a catch-all message. The loader is pure but for reading boot files, so no
host is involved."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, note
from hypothesis import strategies as st

from components.config import load_config
from components.inputs import SecretText
from components.prepare import prepare
from components.resources import resource_plan
from tests.cfgkit import boot_files_project, raw_config, raw_value, valid_config
from tests.fuzzkit import PEM, Path_, fuzz_settings, hostile_text, hostile_values, leaks_key, node_at, places
from vocabulary.errors import ConfigError
from vocabulary.problems import path_of
from vocabulary.shown import looks_like_key, looks_like_pasted_key, shown

CATCH_ALL = re.compile(r"traceback|internal error|unexpected|exception|\bNone of\b", re.IGNORECASE)


CONFIG = valid_config()


PLACES = [p for p in places(CONFIG) if p[0] != "cloudrepo:sshPrivateKey"]
BOOT_FILES = [p for p in PLACES if p[-2:-1] == ("launch",) and p[-1] in ("kernel", "initrd", "image")]
FIELDS = [p for p in PLACES if p not in BOOT_FILES]
OBJECTS = [p for p in PLACES if isinstance(node_at(CONFIG, p), dict)]


def key_path(at: Path_) -> str:
    """The key path problems use: `cloudrepo:slice.vms[1].worker` (a link written as a pair `[A, B]` is the
    link `{a: A, b: B}`: its ends are `links[0].a` and `links[0].b`)."""
    parts = list(at[1:])
    if at[:2] == ("cloudrepo:slice", "links") and len(at) > 3 and isinstance(at[3], int):
        parts[2] = "ab"[at[3]]
    return path_of(str(at[0]), parts)


def ancestors(at: Path_) -> list[str]:
    """The key paths of `at`'s parents, down to the top-level key's own children (`cloudrepo:slice.vms`)."""
    return [key_path(at[:n]) for n in range(len(at) - 1, 1, -1)]


def names(problem: str, path: str) -> bool:
    """`problem` names `path` itself or a key under it."""
    return any(f"{path}{end}" in problem for end in (":", ".", "[", " ", ")", ","))


def renderings(value: Any) -> set[str]:
    """How a problem may show `value`: as `shown` renders it, as text, or (a long string) its start."""
    out = {shown(value), shown(raw_value(value))}
    if isinstance(value, str):
        out |= {repr(value)[:30], str(value)} if len(value) <= 60 else {repr(value)[:30]}
    elif isinstance(value, int | float) and not isinstance(value, bool) and len(str(value)) <= 60:
        out.add(str(value))
    return out


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return boot_files_project(tmp_path_factory.mktemp("fuzz-project"))


def run(raw: dict[str, str], base: Path) -> list[str] | None:
    """The problems `pulumi preview` reports for `raw` (None: accepted, and the pure rest of the program,
    `__main__.py` without the resources, plans it); any other exception fails."""
    try:
        prepared = prepare(raw, "fuzz", {}, base)
        resource_plan(prepared.plan, None)
    except ConfigError as exc:
        assert exc.problems, "a ConfigError without problems"
        for p in exc.problems:
            assert p.startswith("cloudrepo:"), f"a problem that names no key: {p!r}"
            assert not CATCH_ALL.search(p), f"a catch-all problem: {p!r}"
        assert not leaks_key(str(exc)), f"key text in the error:\n{exc}"
        return exc.problems
    return None


def test_the_valid_config_loads(project: Path) -> None:
    """The fuzz starts from a config that loads, and reaches every key (the launch fields included)."""
    config = load_config(raw_config(CONFIG), "fuzz", project)
    assert sorted(config.launches) == [1002, 1003] and len(config.links) == 4
    assert (
        len(PLACES) > 60
        and key_path(("cloudrepo:slice", "vms", 1, "worker")) == "cloudrepo:slice.vms[1].worker"
    )


def names_it(problems: list[str], at: Path_, value: Any) -> bool:
    """Some problem names the mutated key: a scalar with its value, at its path or a parent's (a duplicate
    id is reported at the other VM's entry, naming this one's); an object or list at its path or a key
    under it; null (the key unset) at its path or a parent's."""
    path = key_path(at)
    if isinstance(value, dict | list):
        return any(names(p, path) for p in problems)
    paths = [path, *ancestors(at)]
    path_field = at[-1] in ("privateKeyPath", "knownHostsPath")
    if isinstance(value, str) and (looks_like_key(value) or (path_field and looks_like_pasted_key(value))):
        # named, never shown
        return any(names(p, path) and "not shown" in p for p in problems)
    if value is None:
        return any(names(p, q) for p in problems for q in paths)
    shows = renderings(value)
    if len(at) == 1 and isinstance(value, str):  # the engine passes text as it is: objects decode from it
        try:
            decoded = json.loads(value)
        except (ValueError, RecursionError):
            decoded = value
        if isinstance(decoded, dict | list) or decoded is None:
            return any(names(p, path) for p in problems)
        shows |= renderings(decoded)
    return any(any(names(p, q) for q in paths) and any(s in p for s in shows) for p in problems)


def mutated(at: Path_, value: Any) -> dict[str, Any]:
    """The valid config with the value at `at` replaced."""
    config = json.loads(json.dumps(CONFIG))
    if len(at) == 1:
        config[at[0]] = value
    else:
        node_at(config, at[:-1])[at[-1]] = value
    return config


def check_named(base: Path, at: Path_, value: Any) -> None:
    problems = run(raw_config(mutated(at, value)), base)
    note(f"{key_path(at)} = {shown(value)}: {problems}")
    if problems is not None:
        assert names_it(problems, at, value), (
            f"no problem names {key_path(at)} with {shown(value)}: {problems}"
        )


@given(at=st.sampled_from(FIELDS), value=hostile_values())
@example(at=("cloudrepo:slice", "topology", 0, "preset"), value=["ring"])
@example(at=("cloudrepo:slice", "vms", 0, "launch", "append"), value=PEM)
@example(at=("cloudrepo:ssh", "privateKeyPath"), value=PEM)
@example(at=("cloudrepo:ssh", "knownHostsPath"), value="x" * 5000)
@example(at=("cloudrepo:parkingVlan",), value="9" * 5000)
@example(at=("cloudrepo:slice", "vms", 0, "dataInterfaces"), value=0)
@example(at=("cloudrepo:slice", "vms", 0, "id"), value=5000)
@example(at=("cloudrepo:slice", "vlanPool", "start"), value=1)
@fuzz_settings(ci=300, long=5000)
def test_a_hostile_value_in_any_field_is_named(project: Path, at: Path_, value: Any) -> None:
    check_named(project, at, value)


def long_boot_file_name_escapes() -> bool:
    """True while a boot-file name over 255 characters escapes `load_config` as OSError (ENAMETOOLONG from
    Path.is_file in components/launch.py); the qemu.imageDirs boot-file rules answer it."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            load_config(raw_config(mutated(BOOT_FILES[0], "k" * 300)), "fuzz", Path(tmp))
        except ConfigError:
            return False
        except OSError:
            return True
    return False


@pytest.mark.xfail(
    long_boot_file_name_escapes(),
    reason="components/launch.py checks a boot file with Path.is_file, which raises OSError (ENAMETOOLONG) "
    "for a name over 255 characters; the boot-file rules of qemu.imageDirs read it with lstat under OSError",
    strict=True,
    raises=OSError,
)
@given(at=st.sampled_from(BOOT_FILES), value=hostile_values())
@example(at=("cloudrepo:slice", "vms", 0, "launch", "kernel"), value="k" * 300)
@fuzz_settings(ci=40, long=1000)
def test_a_hostile_boot_file_is_named(project: Path, at: Path_, value: Any) -> None:
    check_named(project, at, value)


@given(at=st.sampled_from(PLACES))
@fuzz_settings(ci=60, long=400)
def test_a_missing_field_is_an_answer(project: Path, at: Path_) -> None:
    config = json.loads(json.dumps(CONFIG))
    if len(at) == 1:
        del config[at[0]]
    else:
        parent = node_at(config, at[:-1])
        del parent[at[-1]]
    problems = run(raw_config(config), project)
    note(f"without {key_path(at)}: {problems}")


@given(at=st.sampled_from(OBJECTS), key=hostile_text(), value=hostile_values(depth=1))
@fuzz_settings(ci=80, long=1000)
def test_an_unknown_key_is_named(project: Path, at: Path_, key: str, value: Any) -> None:
    config = json.loads(json.dumps(CONFIG))
    parent = node_at(config, at)
    if key in parent:
        return
    parent[key] = value
    problems = run(raw_config(config), project)
    note(f"{key_path((*at, key))} = {shown(value)}: {problems}")
    if at == ("cloudrepo:workers",) and problems is None:
        return  # a new worker, well named and well formed
    assert problems is not None, f"{key_path((*at, key))} was accepted"
    assert any(key_path((*at, key)) in p for p in problems), problems


@given(key=st.sampled_from(sorted(CONFIG)), text=hostile_text())
@fuzz_settings(ci=60, long=600)
def test_garbled_raw_text_of_any_key_is_named(project: Path, key: str, text: str) -> None:
    """The engine hands objects to the program as JSON text: text that is no JSON (or not the JSON
    wanted) is named with the key."""
    raw = raw_config(CONFIG)
    raw[key] = SecretText(text) if key == "cloudrepo:sshPrivateKey" else text
    problems = run(raw, project)
    note(f"{key} = {shown(text)}: {problems}")
    if problems is None or key == "cloudrepo:sshPrivateKey":
        return
    assert any(key in p for p in problems), problems


@given(text=hostile_text())
@example(text=PEM)
@fuzz_settings(ci=30, long=300)
def test_the_key_secret_in_clear_is_refused_without_its_value(project: Path, text: str) -> None:
    raw = raw_config(CONFIG)
    raw["cloudrepo:sshPrivateKey"] = text  # plain text: the stack file holds it in clear
    problems = run(raw, project)
    assert problems == [  # the same words whatever the value: nothing of it is shown
        "cloudrepo:sshPrivateKey: must be a secret, but the stack config holds it in clear (the value is not "
        "shown): pulumi config set --secret cloudrepo:sshPrivateKey < KEYFILE"
    ]
