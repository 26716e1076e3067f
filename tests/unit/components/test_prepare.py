"""One path from config to plan: `pulumi preview` (`__main__.py`: the engine's raw config) and the
`cloudrepo` command (`stackfile.check`: a stack file's config) both call `components.prepare.prepare`, and
give the same prepared slice, or the same problems, for any config; the config side imports no transport
and no provider kind."""

from __future__ import annotations

import json
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pulumi
import pytest
from hypothesis import example, given, note
from hypothesis import strategies as st

from cloudrepo import stackfile
from components.inputs import raw_stack_config
from components.outputs import stack_outputs
from components.prepare import Prepared, prepare
from tests.cfgkit import ROOT, boot_files_project, raw_config, valid_config
from tests.fuzzkit import DELETE, Path_, fuzz_settings, hostile_values, places, replaced
from vocabulary.errors import ConfigError

CONFIG = valid_config()
PLACES = places(CONFIG)
SECRET = "cloudrepo:sshPrivateKey"
PURE = (
    "components.config",
    "components.launch",
    "components.vms",
    "components.bootfiles",
    "components.prepare",
)


def test_the_config_side_imports_no_transport_and_no_provider_kind() -> None:
    """In a fresh interpreter: the config, launch and plan modules pull in neither paramiko nor the SSH
    transport nor a resource kind (only `components.slice`, which builds the resources, may)."""
    code = f"import json, sys\nimport {', '.join(PURE)}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    modules = json.loads(out.stdout)
    assert set(PURE) <= set(modules)
    banned = [
        m
        for m in modules
        if m == "paramiko"
        or m.startswith(("paramiko.", "transport.", "providers.kinds"))
        or m in ("transport", "pulumi_command")
    ]
    assert banned == []


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return boot_files_project(tmp_path_factory.mktemp("prepare-project"))


def program_path(config: dict[str, Any], previous: dict[str, Any], base: Path) -> Prepared | list[str]:
    """What `__main__.py` prepares: the engine hands the program its raw config (objects as JSON text,
    the secret's value decrypted; here the command's stand-in for it, which only has to be set)."""
    raw = raw_config(config)
    secret = config.get(SECRET)
    held = isinstance(secret, dict) and set(secret) == {"secure"}  # the engine holds it as a secret
    if held:
        raw[SECRET] = stackfile.SECRET_PLACEHOLDER
    pulumi.runtime.set_all_config(raw, [SECRET] if held else [])
    try:
        return prepare(raw_stack_config(), "s1", previous, base)
    except ConfigError as exc:
        return exc.problems
    finally:
        pulumi.runtime.set_all_config({}, [])


def command_path(config: dict[str, Any], previous: dict[str, Any], base: Path) -> Prepared | list[str]:
    """What the `cloudrepo` command checks before it writes a stack file."""
    try:
        return stackfile.check(config, "s1", previous, base)
    except ConfigError as exc:
        return exc.problems


@cache
def deployed_outputs(base: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The stack's memory: none, and the valid config's own outputs (its links keep their VLANs)."""
    prepared = prepare(raw_config(CONFIG), "s1", {}, base)
    return {}, json.loads(json.dumps(stack_outputs(prepared.plan)))


@given(
    at=st.sampled_from(PLACES),
    value=st.one_of(hostile_values(), st.just(DELETE)),
    deployed=st.booleans(),
)
@example(at=("cloudrepo:slice", "vms", 0, "launch", "kernel"), value="/etc/passwd", deployed=False)
@example(at=("cloudrepo:slice", "vms", 0, "launch", "cpus"), value=0, deployed=True)
@example(at=("cloudrepo:parkingVlan",), value=400, deployed=False)
@fuzz_settings(ci=60, long=1000)
def test_the_command_and_the_program_prepare_the_same_slice(
    project: Path, at: Path_, value: Any, deployed: bool
) -> None:
    """For a valid config with one field replaced by anything (or deleted), and with or without a
    deployed slice's outputs: the same prepared slice, or the same problems in the same order."""
    config = replaced(CONFIG, at, value)
    previous = deployed_outputs(project)[deployed]
    note(f"{at} = {value!r}")
    by_program = program_path(config, previous, project)
    by_command = command_path(config, previous, project)
    assert by_command == by_program
    assert isinstance(by_command, list) or by_command.config.launches.keys() <= {1002, 1003}


def test_the_valid_config_prepares_the_same_launched_slice(project: Path) -> None:
    by_program = program_path(CONFIG, {}, project)
    assert isinstance(by_program, Prepared)
    assert sorted(by_program.config.launches) == [1002, 1003]
    assert [vm.spec.vm for vm in by_program.vms] == [1002, 1003]
    assert command_path(CONFIG, {}, project) == by_program


def test_a_bad_launch_is_refused_by_the_command_too(project: Path) -> None:
    """The launch rules are the config's: the command refuses what preview refuses, naming the key path."""
    config = replaced(CONFIG, ("cloudrepo:slice", "vms", 0, "launch", "cpus"), 0)
    config = replaced(config, ("cloudrepo:slice", "vms", 1, "launch", "image"), "../Pulumi.yaml")
    problems = command_path(config, {}, project)
    assert problems == [
        "cloudrepo:slice.vms[0].launch.cpus: input should be greater than or equal to 1, got 0",
        "cloudrepo:slice.vms[1].launch.image: '../Pulumi.yaml' is outside cloudrepo:qemu.imageDirs "
        "('images', '.lab/guest')",
    ]
    assert program_path(config, {}, project) == problems
