"""The testbed's settings are read when a function runs, not when `lab.common` is imported: changing
CLOUDREPO_LAB_* after the import moves every name, port and path the testbed functions produce."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench import baselines, topology
from lab import PROJECT_ROOT, common, fabric, guest, sshd, testbed, testenv
from lab.common import DIR_VAR, PORT_VAR, PREFIX_VAR, VM_PREFIX_VAR, LabError, settings

PREFIX_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"
prefixes = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from(PREFIX_CHARS[:62]),
    st.text(PREFIX_CHARS, max_size=31),
)
workers = st.integers(min_value=1, max_value=64)
ports = st.integers(min_value=1, max_value=65535 - 64)


def point_at(monkeypatch: pytest.MonkeyPatch, lab: Path, prefix: str, vm_prefix: str, port: int) -> None:
    monkeypatch.setenv(DIR_VAR, str(lab))
    monkeypatch.setenv(PREFIX_VAR, prefix)
    monkeypatch.setenv(VM_PREFIX_VAR, vm_prefix)
    monkeypatch.setenv(PORT_VAR, str(port))


def test_the_variables_set_after_import_decide(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    point_at(monkeypatch, tmp_path / "one", "p1-", "q1-", 2400)
    assert common.host_ns("worker2") == "p1-worker2"
    assert common.ssh_port("worker2") == 2402
    assert guest.guest_ns("g") == "q1-g"
    assert common.host_paths("network").sshd_pid == tmp_path / "one" / "hosts" / "network" / "sshd.pid"
    assert sshd.known_hosts() == tmp_path / "one" / "known_hosts"
    assert baselines.rundir() == "/tmp/cloudrepo-bench-p1"

    point_at(monkeypatch, tmp_path / "two", "p2-", "q2-", 2600)
    assert common.lab_dir() == tmp_path / "two"
    assert common.host_ns("worker2") == "p2-worker2"
    assert common.ssh_port("network") == 2600
    assert common.ssh_port("worker2") == 2602
    assert guest.guest_ns("g") == "q2-g"
    assert guest.vms_dir() == tmp_path / "two" / "vms"
    assert fabric.internet_dir() == tmp_path / "two" / "internet"
    assert baselines.rundir() == "/tmp/cloudrepo-bench-p2"
    inventory = testbed.build_inventory(["network", "worker1"])
    assert inventory["fabric"]["namespace"] == "p2-fabric"
    assert inventory["internet"]["namespace"] == "p2-internet"
    assert {h: (i["namespace"], i["port"], i["dir"]) for h, i in inventory["hosts"].items()} == {
        "network": ("p2-network", 2600, str(tmp_path / "two" / "hosts" / "network")),
        "worker1": ("p2-worker1", 2601, str(tmp_path / "two" / "hosts" / "worker1")),
    }
    spec = topology.SliceSpec("b", 2, 100, 2000)
    config = spec.stack_config()
    assert config["cloudrepo:networkNode"]["port"] == 2600
    assert config["cloudrepo:workers"] == {
        "worker1": {"host": "127.0.0.1", "port": 2601},
        "worker2": {"host": "127.0.0.1", "port": 2602},
    }
    assert config["cloudrepo:ssh"]["privateKeyPath"] == str(tmp_path / "two" / "id_ed25519")


def test_defaults_are_the_demo_testbed() -> None:
    lab = settings({})
    assert (lab.dir, lab.prefix, lab.vm_prefix, lab.base_port) == (PROJECT_ROOT / ".lab", "lab-", "vm-", 2200)
    assert (lab.fabric_ns, lab.internet_ns) == ("lab-fabric", "lab-internet")


@given(prefix=prefixes, vm_prefix=prefixes, port=ports, n=workers)
def test_names_and_ports_follow_the_settings(prefix: str, vm_prefix: str, port: int, n: int) -> None:
    env = {PREFIX_VAR: prefix, VM_PREFIX_VAR: vm_prefix, PORT_VAR: str(port), DIR_VAR: "/srv/lab"}
    if prefix.startswith(vm_prefix) or vm_prefix.startswith(prefix):
        with pytest.raises(LabError, match="overlap: one starts with the other"):
            settings(env)
        return
    lab = settings(env)
    hosts = common.host_names(n)
    assert [lab.ssh_port(h) for h in hosts] == list(range(port, port + n + 1))
    names = [lab.host_ns(h) for h in hosts] + [lab.fabric_ns, lab.internet_ns]
    assert len(set(names)) == len(names)
    assert all(name.startswith(prefix) and lab.owns_ns(name) for name in names)
    assert lab.owns_ns(lab.guest_ns("x")) and not lab.guest_ns("x").startswith(prefix)
    assert lab.host_paths("worker1").root == Path("/srv/lab/hosts/worker1")


@given(bad=st.text(max_size=40).filter(lambda s: not common.PREFIX_RE.fullmatch(s)))
def test_a_bad_prefix_is_named_with_its_variable(bad: str) -> None:
    for var in (PREFIX_VAR, VM_PREFIX_VAR):
        with pytest.raises(LabError) as err:
            settings({var: bad})
        assert str(err.value) == f"{var}={bad!r} is not a namespace prefix (1-32 of A-Z a-z 0-9 _ . -)"


@given(
    bad=st.one_of(
        st.integers().filter(lambda p: not 1 <= p <= 65535).map(str),
        st.text(max_size=8).filter(lambda s: not (s.isascii() and s.isdigit() and 1 <= int(s) <= 65535)),
    )
)
def test_a_bad_port_is_named_with_its_variable(bad: str) -> None:
    with pytest.raises(LabError) as err:
        settings({PORT_VAR: bad})
    assert str(err.value) == f"{PORT_VAR}={bad!r} is not a TCP port (1-65535)"


def test_all_problems_are_reported_at_once() -> None:
    with pytest.raises(LabError) as err:
        settings({PREFIX_VAR: "", VM_PREFIX_VAR: "a/b", PORT_VAR: "x"})
    assert str(err.value) == (
        f"{PREFIX_VAR}='' is not a namespace prefix (1-32 of A-Z a-z 0-9 _ . -); "
        f"{VM_PREFIX_VAR}='a/b' is not a namespace prefix (1-32 of A-Z a-z 0-9 _ . -); "
        f"{PORT_VAR}='x' is not a TCP port (1-65535)"
    )


def test_a_worker_port_past_65535_is_refused() -> None:
    lab = settings({PORT_VAR: "65534"})
    assert lab.ssh_port("worker1") == 65535
    with pytest.raises(
        LabError, match=r"^worker2's SSH port 65536 \(CLOUDREPO_LAB_PORT=65534 \+ 2\) exceeds 65535$"
    ):
        lab.ssh_port("worker2")
    with pytest.raises(ValueError, match="not a testbed host: 'router'"):
        lab.ssh_port("router")


@given(chosen=st.sets(st.sampled_from(sorted(testenv.TEST_TESTBED))))
def test_the_test_testbed_keeps_what_the_caller_chose(chosen: set[str]) -> None:
    mine = {DIR_VAR: "/tmp/lab-mine", PREFIX_VAR: "m1-", VM_PREFIX_VAR: "n1-", PORT_VAR: "2900"}
    environ = {key: mine[key] for key in chosen}
    lab = testenv.use_test_testbed(environ)
    assert environ == {key: mine[key] if key in chosen else testenv.TEST_TESTBED[key] for key in mine}
    assert lab == settings(environ)


def test_the_internet_host_and_its_web_server_use_the_settings_of_the_call(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    made: list[list[str]] = []
    monkeypatch.setattr(fabric, "netns", _Recorder(made))
    monkeypatch.setattr(fabric, "run", lambda argv, **_: made.append(list(argv)))
    monkeypatch.setattr(fabric, "pidfile_process", lambda *_: None)
    monkeypatch.setattr(fabric, "spawn_daemon", lambda argv, *_, **__: made.append(["spawn", *argv]))
    point_at(monkeypatch, tmp_path, "p3-", "q3-", 2700)
    fabric.ensure_fabric()
    fabric.ensure_internet()
    spawned = [argv for argv in made if argv[0] == "spawn"]
    assert [argv[1:5] for argv in spawned] == [["ip", "netns", "exec", "p3-internet"]]
    named = {arg for argv in made for arg in argv if arg.startswith(("p3-", "lab-", "lt-"))}
    assert named == {"p3-fabric", "p3-internet", "p3-network"}


class _Recorder:
    """Stands in for `lab.netns`: records each call as [function, *arguments]."""

    def __init__(self, made: list[list[str]]) -> None:
        self.made = made

    def __getattr__(self, name: str) -> Callable[..., bool]:
        def call(*args: object) -> bool:
            self.made.append([name, *map(str, args)])
            return False  # nothing exists yet: every link and address is made

        return call
