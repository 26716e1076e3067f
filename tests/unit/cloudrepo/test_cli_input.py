"""Every bad argument of every verb is an answer: the command run in-process (its engine door replaced by
`FakeSlices`) exits 0, 1 or 2 with a message, never a traceback, and a refused edit writes nothing.
`--from` takes only the slice section and names what it left out; files that are not YAML, not text or
not files are named with the reason."""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml
from hypothesis import example, given, note
from hypothesis import strategies as st
from pulumi import automation as auto

from cloudrepo import cli, stackfile
from components.image_store import Registry, file_sha256, open_store
from components.images import ImageEntry
from tests.cfgkit import BASE
from tests.fuzzkit import DELETE, Path_, fuzz_settings, hostile_text, hostile_values, places, replaced
from tests.unit.cloudrepo.fakeslices import ENGINE_ERROR, FakeSlices

SLICE = "s1"
VERBS: list[list[str]] = [
    ["slice", "create", "s2", "--pool", "300", "--cloud", "{CLOUD}", "--from", "{FROM}"],
    ["vm", "add", SLICE, "--id", "1010", "--worker", "worker1", "--data-interfaces", "1", "--internet"],
    ["vm", "rm", SLICE, "1003"],
    ["link", "add", SLICE, "1002.eth2", "1004.eth1", "--vlan", "125"],
    ["link", "rm", SLICE, "1002.eth1", "1003.eth1"],
    ["topology", "add", SLICE, "bus", "1002", "1004"],
    ["preview", SLICE],
    ["deploy", SLICE],
    ["show", SLICE],
    ["list"],
    ["destroy", SLICE, "--yes", "--rm"],
    ["diagram", SLICE, "-o", "{OUT}"],
    ["console", SLICE, "1002"],
    ["console", SLICE, "1002", "--log", "--lines", "20"],
    ["capture", SLICE, "1002.eth1--1003.eth1", "-w", "{PCAP}", "--count", "3", "--filter", "icmp"],
    ["snapshot", "save", SLICE, "before"],
    ["snapshot", "list", SLICE],
    ["snapshot", "restore", SLICE, "before", "--force"],
    ["snapshot", "delete", SLICE, "before"],
    ["image", "add", "tiny", "{DISK}", "--description", "a blank disk"],
    ["image", "list", "--json"],
    ["image", "rm", "tiny"],
]
"""One call of each verb, with every argument and option it takes."""


def cloud_config() -> dict[str, Any]:
    config = {k: v for k, v in json.loads(json.dumps(BASE)).items() if k != stackfile.SLICE_KEY}
    config["cloudrepo:sshPrivateKey"] = {"secure": "v1:ciphertext"}
    return config


@contextlib.contextmanager
def project() -> Iterator[Path]:
    """A checkout holding the slice `s1` (BASE and VM 1004, one free data interface each on 1002 and 1004),
    a cloud file and a `--from` file."""
    with tempfile.TemporaryDirectory(prefix="cloudrepo-cli-") as tmp:
        root = Path(tmp)
        (root / "Pulumi.yaml").write_text("name: cloudrepo\nruntime: python\n")
        section = {k: v for k, v in BASE[stackfile.SLICE_KEY].items() if k != "name"}
        section["vms"] = [*section["vms"], {"id": 1004, "worker": "worker2", "dataInterfaces": 1}]
        stackfile.write(
            stackfile.stack_file(root, SLICE),
            {"encryptionsalt": "v1:fake", "config": {**cloud_config(), stackfile.SLICE_KEY: section}},
        )
        stackfile.write(root / "cloud.yaml", {"encryptionsalt": "v1:other", "config": cloud_config()})
        stackfile.write(root / "from.yaml", {"vlanPool": {"start": 300}, "vms": [], "links": []})
        disk = root / "disk.qcow2"
        disk.write_bytes(b"QFI\xfb" + bytes(60))
        backend = root / "backend"  # the image registry's (a directory: `files` compares the files only)
        Registry(open_store(f"file://{backend}")).add(
            ImageEntry("tiny", file_sha256(disk), 64, "qcow2"), disk
        )
        FakeSlices.backend = {SLICE: {}}
        FakeSlices.secrets = {}
        FakeSlices.broken = False
        with mock.patch.dict(os.environ, {"PULUMI_BACKEND_URL": f"file://{backend}"}):
            yield root


@pytest.fixture(autouse=True)
def no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "Slices", FakeSlices)
    monkeypatch.setattr(cli, "apply_environment", lambda: None)
    monkeypatch.setattr(
        cli,
        "decrypt_config",
        lambda path: {"cloudrepo:sshPrivateKey": auto.ConfigValue(value="KEY-TEXT", secret=True)},
    )


def run(argv: list[str], root: Path) -> tuple[int, str, str]:
    """`cloudrepo --project ROOT ARGV` in-process: exit code, stdout, stderr. Any exception but argparse's
    exit fails the test."""
    fill = {
        "{CLOUD}": str(root / "cloud.yaml"),
        "{FROM}": str(root / "from.yaml"),
        "{OUT}": str(root / "o.svg"),
        "{PCAP}": str(root / "o.pcap"),
        "{DISK}": str(root / "disk.qcow2"),
    }
    argv = [fill.get(a, a) for a in argv]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(["--project", str(root), *argv])
        except SystemExit as exc:  # argparse: usage errors (2) and --help (0)
            code = exc.code if isinstance(exc.code, int) else 2
            assert code in (0, 2), exc
    return code, out.getvalue(), err.getvalue()


def check_answer(code: int, out: str, err: str) -> None:
    assert code in (0, 1, 2), code
    assert "Traceback" not in out + err
    if code == 0:
        assert out.strip(), "exit 0 without a word"
    else:
        assert err.strip(), f"exit {code} without a message"


def files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()}


def test_every_verb_template_runs() -> None:
    """The fuzz's starting calls are valid: each verb answers (the engine verbs of the fake included)."""
    for argv in VERBS:
        with project() as root:
            code, out, err = run(argv, root)
            check_answer(code, out, err)
            # not deployed: no picture, no console, no link to capture, nothing to snapshot; no snapshot
            refused = argv[0] in ("diagram", "console", "capture") or argv[:2] in (
                ["snapshot", "save"], ["snapshot", "restore"], ["snapshot", "delete"]
            )  # fmt: skip
            assert code == (1 if refused else 0), (argv, out, err)


@given(
    verb=st.sampled_from(VERBS),
    data=st.data(),
    how=st.sampled_from(["replace", "insert", "drop"]),
)
@example(verb=VERBS[1], data=None, how="name-traversal")
@fuzz_settings(ci=150, long=3000)
def test_a_hostile_argument_of_any_verb_is_an_answer(
    verb: list[str], data: st.DataObject | None, how: str
) -> None:
    argv = list(verb)
    if how == "name-traversal":
        argv[2] = "../../etc/cron.d/x"
    else:
        assert data is not None
        i = data.draw(st.integers(0, len(argv) - 1 if how != "insert" else len(argv)), label="at")
        text = data.draw(hostile_text(), label="text")
        if how == "replace":
            argv[i] = text
        elif how == "insert":
            argv.insert(i, text)
        else:
            del argv[i]
    with project() as root:
        before = files(root)
        code, out, err = run(argv, root)
        note(f"{argv}: {code}\n{out}\n{err}")
        check_answer(code, out, err)
        if code != 0:
            assert files(root) == before, "a refused call changed the checkout"
        assert not any(Path(root.parent / p).exists() for p in ("etc",)), "a file outside the project"


@given(content=hostile_values(), key=st.sampled_from(["{FROM}", "{CLOUD}", "stack"]))
@example(content="a: [1, 2\nb: {", key="{FROM}")
@example(content="a: [1, 2\nb: {", key="{CLOUD}")
@example(content="config: [1, 2", key="stack")
@fuzz_settings(ci=80, long=1500)
def test_hostile_file_content_is_an_answer(content: Any, key: str) -> None:
    """Any YAML document (or text that is none) as `--from`, `--cloud` or the slice's stack file."""
    with project() as root:
        target = {
            "{FROM}": root / "from.yaml",
            "{CLOUD}": root / "cloud.yaml",
            "stack": root / "Pulumi.s1.yaml",
        }
        text = content if isinstance(content, str) else yaml.safe_dump(content)
        target[key].write_text(text)
        argv = VERBS[0] if key != "stack" else VERBS[1]
        code, out, err = run(argv, root)
        note(f"{text[:200]!r}: {code}\n{out}\n{err}")
        check_answer(code, out, err)


def s1_config() -> dict[str, Any]:
    with project() as root:
        return stackfile.config_of(stackfile.read(stackfile.stack_file(root, SLICE)))


STACK_PLACES = places(s1_config())
EDITS = [argv for argv in VERBS if argv[0] in ("vm", "link", "topology")]


@given(
    at=st.sampled_from(STACK_PLACES),
    value=st.one_of(hostile_values(), st.just(DELETE)),
    argv=st.sampled_from(EDITS),
)
@fuzz_settings(ci=100, long=2000)
def test_a_hostile_stack_file_is_an_answer(at: Path_, value: Any, argv: list[str]) -> None:
    """One place of the slice's stack config file replaced (or deleted), then any edit verb on it: an
    answer, and a refused edit leaves the file as it was."""
    with project() as root:
        path = stackfile.stack_file(root, SLICE)
        doc = stackfile.read(path)
        stackfile.write(path, {**doc, "config": replaced(doc["config"], at, value)})
        before = files(root)
        code, out, err = run(argv, root)
        note(f"{at} = {value!r}, {argv}: {code}\n{out}\n{err}")
        check_answer(code, out, err)
        if code != 0:
            assert files(root) == before


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (
            lambda p: p.write_text("vlanPool: {start: 300\nvms: ["),
            "not valid YAML at line 2, column 4: expected ',' or '}'",
        ),
        (lambda p: p.write_bytes(os.urandom(100) + b"\xff\xfe"), "not a text file"),
        (lambda p: p.mkdir(), "not a regular file"),
        (lambda p: p.symlink_to("/dev/zero"), "not a regular file"),
        (lambda p: p.write_text("- 1\n- 2\n"), "no slice in it"),
        (lambda p: p.write_text("[" * 5000), "YAML"),
    ],
    ids=["malformed", "binary", "directory", "device", "a-list", "deep"],
)
@pytest.mark.parametrize("option", ["--from", "--cloud"])
def test_a_file_that_is_no_slice_file_is_named(make: Any, reason: str, option: str) -> None:
    with project() as root:
        bad = root / "bad.yaml"
        make(bad)
        argv = ["slice", "create", "s2", "--pool", "300", option, str(bad)]
        if option == "--cloud" and reason == "no slice in it":
            reason = "not a stack config file"
        code, _, err = run(argv, root)
        assert code == 1 and str(bad) in err and reason in err, err
        assert "Traceback" not in err
        assert not (root / "Pulumi.s2.yaml").exists()


def test_a_malformed_stack_file_is_named() -> None:
    with project() as root:
        path = root / "Pulumi.s1.yaml"
        path.write_text("config:\n  cloudrepo:slice: {vlanPool: {start: 120}\n")
        code, _, err = run(["vm", "add", SLICE, "--id", "7", "--worker", "worker1"], root)
        assert code == 1 and f"{str(path)!r}: not valid YAML at line 3, column 1" in err, err


def test_from_takes_only_the_slice_section_and_names_the_rest() -> None:
    with project() as root:
        hostile = {
            "config": {
                **cloud_config(),
                "cloudrepo:ssh": {
                    "user": "root",
                    "privateKeyPath": "/root/.ssh/id_ed25519",
                    "knownHostsPath": "kh",
                },
                "cloudrepo:qemu": {"binary": "eval"},
                "cloudrepo:parkingVlan": "120",
                "aws:region": "x",
                stackfile.SLICE_KEY: {"vlanPool": {"start": 300}, "vms": [{"id": 7, "worker": "worker1"}]},
            }
        }
        stackfile.write(root / "from.yaml", hostile)
        code, _, err = run(VERBS[0], root)
        assert code == 0, err
        assert err.splitlines() == [
            f"cloudrepo: warning: --from {str(root / 'from.yaml')!r}: took only the slice (cloudrepo:slice); "
            "left out aws:region, cloudrepo:networkNode, cloudrepo:parkingVlan, cloudrepo:qemu, "
            "cloudrepo:ssh, cloudrepo:sshPrivateKey, cloudrepo:workers (the operator's keys come from "
            "--cloud or the slice's stack config file)"
        ]
        config = stackfile.config_of(stackfile.read(root / "Pulumi.s2.yaml"))
        cloud = cloud_config()
        assert config == {
            **{k: v for k, v in cloud.items() if k != "cloudrepo:sshPrivateKey"},
            stackfile.SLICE_KEY: {
                "vlanPool": {"start": 300},
                "vms": [{"id": 7, "worker": "worker1"}],
                "links": [],
            },
        }
        assert FakeSlices.secrets == {("s2", "cloudrepo:sshPrivateKey"): "KEY-TEXT"}


def test_from_a_bare_section_leaves_operator_keys_out() -> None:
    with project() as root:
        bare = {
            "vlanPool": {"start": 300},
            "workers": {"evil": {"host": "10.9.9.9"}},
            "uplink": "eth9",
            "vms": [],
        }
        stackfile.write(root / "from.yaml", bare)
        code, _, err = run(VERBS[0], root)
        assert code == 0, err
        assert "left out uplink, workers (" in err
        section = stackfile.config_of(stackfile.read(root / "Pulumi.s2.yaml"))[stackfile.SLICE_KEY]
        assert section == {"vlanPool": {"start": 300}, "vms": [], "links": []}


def test_an_unknown_key_of_the_section_is_still_named_at_its_path() -> None:
    with project() as root:
        stackfile.write(root / "from.yaml", {"vlanPool": {"start": 300}, "vmz": []})
        code, _, err = run(VERBS[0], root)
        assert code == 1
        assert "cloudrepo:slice.vmz: unknown key 'vmz'; did you mean 'vms'?" in err, err
        assert not (root / "Pulumi.s2.yaml").exists()


def test_from_refuses_a_bad_launch_as_preview_does() -> None:
    """The launch rules are part of the config: a slice whose VM boots from a file outside
    `qemu.imageDirs`, or has an unknown launch key, is refused before the stack file is written."""
    with project() as root:
        vms = [
            {"id": 7, "worker": "worker1", "launch": {"kernel": "/etc/passwd"}},
            {"id": 8, "worker": "worker2", "launch": {"image": "images/x", "kernal": "k"}},
        ]
        stackfile.write(root / "from.yaml", {"vlanPool": {"start": 300}, "vms": vms})
        code, _, err = run(VERBS[0], root)
        assert code == 1, err
        assert (
            "cloudrepo:slice.vms[0].launch.kernel: '/etc/passwd' is outside cloudrepo:qemu.imageDirs "
            "('images', '.lab/guest')" in err
        ), err
        assert "cloudrepo:slice.vms[1].launch.kernal: unknown key 'kernal'; did you mean 'kernel'?" in err, (
            err
        )
        assert not (root / "Pulumi.s2.yaml").exists()


def test_a_plain_key_secret_in_the_cloud_file_is_refused_without_its_value() -> None:
    with project() as root:
        cloud = cloud_config()
        cloud["cloudrepo:sshPrivateKey"] = "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAAsecretbody\n-----END"
        stackfile.write(root / "cloud.yaml", {"config": cloud})
        code, _, err = run(["slice", "create", "s2", "--pool", "300", "--cloud", "{CLOUD}"], root)
        assert code == 1 and "cloudrepo:sshPrivateKey: must be a secret" in err, err
        assert "AAAAsecretbody" not in err and "PRIVATE KEY" not in err
        assert not (root / "Pulumi.s2.yaml").exists() and "s2" not in FakeSlices.backend


def test_an_engine_error_is_an_answer() -> None:
    """The engine failing (an unreachable backend) under any verb: exit 1 and its own words."""
    for argv in VERBS:
        with project() as root:
            FakeSlices.broken = True
            code, out, err = run(argv, root)
            check_answer(code, out, err)
            if argv[0] != "diagram" and argv[:2] not in (["image", "add"], ["image", "list"]):  # no engine
                assert code == 1 and ENGINE_ERROR in err, (argv, out, err)


@pytest.mark.parametrize("name", ["..", ".", "../x", "a/b", "-x", "a b", "x" * 101, "é", "a\nb", ""])
def test_a_slice_name_that_is_no_stack_name_is_bad_usage(name: str) -> None:
    with project() as root:
        code, _, err = run(["vm", "add", name, "--id", "7", "--worker", "worker1"], root)
        assert code == 2, err
        assert "is not a slice name" in err or name == "-x", err
