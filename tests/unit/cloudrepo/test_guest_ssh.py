"""`cloudrepo ssh` / `exec` without a network: the access facts read from outputs, the slice's known_hosts,
the OpenSSH config and argv (read back by the real `ssh -G`), and the verbs run in-process with `ssh`
replaced by a recorder. Hostile names, users, addresses and commands never become options, directives or
extra arguments; the secret key reaches ssh only as a 0600 file that is gone afterwards."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import example, given, note
from hypothesis import strategies as st

from cloudrepo import cli, guestssh, stackfile, tables
from cloudrepo.access import (
    AccessError,
    GuestAccess,
    JumpHost,
    guest_access,
    guest_vms,
    jump_host,
    known_hosts_text,
)
from cloudrepo.sshargv import GUEST, JUMP, Files, config_text, ssh_argv
from components.outputs import stack_outputs
from components.prepare import prepare
from tests.cfgkit import BASE, raw_config, with_changes
from tests.fuzzkit import fuzz_settings, hostile_text
from tests.unit.cloudrepo.fakeslices import FakeSlices

SLICE = "s1"
SECRET = "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAAsecretbody\n-----END OPENSSH PRIVATE KEY-----\n"


def public_key(comment: str = "") -> str:
    raw = ed25519.Ed25519PrivateKey.generate().public_key()
    text = raw.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return f"{text} {comment}".strip()


KEYS = {1002: public_key("cloudrepo-vm1002"), 1003: public_key("cloudrepo-vm1003")}


def guest_entry(vm: int, worker: str, internet: bool, link_ip: str) -> dict[str, Any]:
    interfaces = {
        "eth1": {"vlan": 120, "ip": link_ip, "parked": False, "mac": "52:54:00:03:ea:01"},
        "eth2": {"vlan": None, "ip": None, "parked": True, "mac": "52:54:00:03:ea:02"},
    }
    addresses = {"eth1": link_ip}
    if internet:
        interfaces["eth0"] = {"vlan": 400, "ip": "10.60.7.10", "parked": False, "mac": "52:54:00:03:ea:00"}
        addresses["eth0"] = "10.60.7.10"
    return {
        "worker": worker,
        "internet": internet,
        "interfaces": interfaces,
        "running": True,
        "console": f"/var/lib/cloudrepo/vms/{vm}/console.sock",
        "cloudInit": {
            "user": "cloud",
            "hostname": f"vm{vm}",
            "addresses": addresses,
            "hostKey": KEYS[vm],
            "ssh": f"cloudrepo ssh {SLICE} {vm}",
        },
    }


def outputs() -> dict[str, Any]:
    return {
        "slice": SLICE,
        "vms": {
            "1002": guest_entry(1002, "worker1", True, "192.168.120.10"),
            "1003": guest_entry(1003, "worker2", False, "192.168.120.11"),
            "1004": {"worker": "worker1", "interfaces": {}, "running": True},  # launched, no cloud-init
            "1005": {"worker": "worker1", "interfaces": {}},  # not launched
        },
    }


# --- the facts ---------------------------------------------------------------------------------------


def test_the_address_is_vlan_400_first_then_the_first_link() -> None:
    out = outputs()
    first = guest_access(out, SLICE, 1002)
    assert (first.user, first.address, first.addresses) == (
        "cloud",
        "10.60.7.10",
        ("10.60.7.10", "192.168.120.10"),
    )
    assert first.host_key == " ".join(KEYS[1002].split()[:2])
    assert guest_access(out, SLICE, 1003).address == "192.168.120.11"
    out["vms"]["1002"]["cloudInit"]["addresses"]["eth0"] = None  # VLAN 400's not known yet
    assert guest_access(out, SLICE, 1002).address == "192.168.120.10"


@pytest.mark.parametrize(
    ("vm", "change", "words"),
    [
        (1009, None, "has no VM 1009 (its VMs: 1002, 1003, 1004, 1005)"),
        (1005, None, "is not launched"),
        (1004, None, "has no cloud-init"),
        (1002, ("hostKey", None), "host key is not known yet"),
        (1002, ("hostKey", "ssh-ed25519 AAAA -oProxyCommand=x"), "its host key: SSH public key"),
        (1002, ("user", "-oProxyCommand=sh"), "its cloud-init user: '-oProxyCommand=sh' is not a login name"),
        (1002, ("addresses", {"eth0": "10.60.7.10 -R1:x:2", "eth1": None}), "no address reachable"),
    ],
)
def test_what_cannot_be_reached_is_named(vm: int, change: tuple[str, Any] | None, words: str) -> None:
    out = outputs()
    if change is not None:
        out["vms"]["1002"]["cloudInit"][change[0]] = change[1]
    with pytest.raises(AccessError) as exc:
        guest_access(out, SLICE, vm)
    assert words in str(exc.value) and f"slice {SLICE!r}" in str(exc.value)


def test_the_reader_follows_the_programs_outputs(tmp_path: Path) -> None:
    """The outputs as the program writes them (`components.outputs` from a prepared config with
    `cloudInit`, the host key and `running` as the VM's resources add them) give the access facts."""
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "disk.qcow2").write_bytes(b"QFI\xfb rest")
    launch = {"image": "images/disk.qcow2", "cloudInit": {"user": "op", "sshAuthorizedKeys": [public_key()]}}
    section = dict(BASE["cloudrepo:slice"])
    section["vms"] = [{**vm, "launch": launch} for vm in section["vms"]] + [{"id": 1004, "worker": "worker1"}]
    prepared = prepare(raw_config(with_changes(slice=section)), SLICE, {}, tmp_path)
    out = stack_outputs(prepared.plan, lambda mac: "10.60.7.12")
    for vm in (1002, 1003):
        out["vms"][str(vm)].update(running=True, console="/x")
        out["vms"][str(vm)]["cloudInit"]["hostKey"] = KEYS[vm]
    out["vms"]["1004"].update(running=True, console="/x")
    first, second = guest_access(out, SLICE, 1002), guest_access(out, SLICE, 1003)
    link = out["vms"]["1002"]["interfaces"]["eth1"]["ip"]
    assert (first.user, first.address, first.addresses) == ("op", "10.60.7.12", ("10.60.7.12", link))
    assert second.address == out["vms"]["1003"]["interfaces"]["eth1"]["ip"]
    assert guest_vms(out) == [1002, 1003]
    with pytest.raises(AccessError, match="has no cloud-init"):
        guest_access(out, SLICE, 1004)


def test_a_slice_not_deployed_is_named() -> None:
    with pytest.raises(AccessError, match="slice 's1' is not deployed"):
        guest_access({}, SLICE, 1002)


def test_known_hosts_pins_every_address_to_its_guest() -> None:
    out = outputs()
    text = known_hosts_text([guest_access(out, SLICE, 1002), guest_access(out, SLICE, 1003)])
    k2, k3 = (" ".join(KEYS[v].split()[:2]) for v in (1002, 1003))
    assert text == f"10.60.7.10 {k2}\n192.168.120.10 {k2}\n192.168.120.11 {k3}\n"


def test_the_jump_host_is_the_network_node_with_the_hosts_login(tmp_path: Path) -> None:
    config = {**BASE, "cloudrepo:networkNode": {"host": "127.0.0.1", "port": 2200}}
    config["cloudrepo:ssh"] = {"user": "root", "privateKeyPath": "k", "knownHostsPath": "/x/kh"}
    jump = jump_host(config, tmp_path)
    assert (jump.host, jump.port, jump.user) == ("127.0.0.1", 2200, "root")
    assert (jump.key_path, jump.known_hosts, jump.connect_timeout) == (tmp_path / "k", Path("/x/kh"), 10)
    secret = jump_host({**config, "cloudrepo:sshPrivateKey": {"secure": "v1:x"}}, tmp_path)
    assert secret.key_path is None


# --- the config and argv, read back by OpenSSH --------------------------------------------------------


def ssh_g(files: Files, vm: int, host: str = GUEST) -> dict[str, list[str]]:
    """`ssh -G`: what OpenSSH makes of the config for `host` (it connects nowhere)."""
    got = subprocess.run(
        ["ssh", "-G", "-F", str(files.config(vm)), "--", host], capture_output=True, text=True, check=True
    )
    seen: dict[str, list[str]] = {}
    for line in got.stdout.splitlines():
        key, _, value = line.partition(" ")
        seen.setdefault(key, []).append(value)
    return seen


def make(jump: JumpHost, guest: GuestAccess, root: Path, identity: bool = False) -> Files:
    files = Files(root)
    files.config(guest.vm).write_text(config_text(jump, guest, files, identity=identity, batch=True))
    return files


JUMP_HOST = JumpHost("127.0.0.1", 2200, "root", Path("/kh"), Path("/k"), 10)
GUEST_1002 = GuestAccess(1002, "cloud", "10.60.7.10", ("10.60.7.10",), KEYS[1002])


def test_openssh_reads_both_hops_as_written(tmp_path: Path) -> None:
    files = make(JUMP_HOST, GUEST_1002, tmp_path, identity=True)
    guest = ssh_g(files, 1002)
    assert guest["hostname"] == ["10.60.7.10"] and guest["user"] == ["cloud"] and guest["port"] == ["22"]
    assert guest["proxyjump"] == [JUMP]
    assert guest["userknownhostsfile"] == [str(files.guests_known)]
    assert guest["stricthostkeychecking"] == ["true"]
    assert guest["identityfile"] == [str(files.identity)] and guest["identitiesonly"] == ["yes"]
    assert guest["passwordauthentication"] == ["no"] and guest["forwardagent"] == ["no"]
    jump = ssh_g(files, 1002, JUMP)
    assert jump["hostname"] == ["127.0.0.1"] and jump["port"] == ["2200"] and jump["user"] == ["root"]
    assert jump["identityfile"] == [str(files.hosts_key)] and jump["identityagent"] == ["none"]
    assert jump["userknownhostsfile"] == [str(files.hosts_known)]
    assert jump["stricthostkeychecking"] == ["true"] and jump["batchmode"] == ["yes"]


def test_without_i_the_users_own_identities_are_offered(tmp_path: Path) -> None:
    guest = ssh_g(make(JUMP_HOST, GUEST_1002, tmp_path, identity=False), 1002)
    assert guest["identitiesonly"] == ["no"] and guest.get("identityagent") != ["none"]
    assert any(f.endswith("/.ssh/id_ed25519") for f in guest["identityfile"]), guest["identityfile"]


words = st.one_of(
    hostile_text(),
    st.sampled_from(
        ["-oProxyCommand=sh", "a b", "x\nHost *", "%d", "${HOME}", "a#b", "-", "cloud\n  User root"]
    ),
)


@given(host=words, user=words, guest_user=words, address=words, port=st.integers(-5, 70000))
@example(host="Node-1.example", user="root", guest_user="_c-1", address="10.0.0.5", port=65535)
@example(host="10.0.0.1", user="root", guest_user="cloud", address="010.0.0.5", port=22)
@fuzz_settings(ci=120, long=2000)
def test_hostile_values_are_refused_or_written_as_themselves(
    host: str, user: str, guest_user: str, address: str, port: int
) -> None:
    """Whatever the outputs or the config hold: refused with a message, or every value is one word of its
    own directive (the config has exactly its lines and OpenSSH reads back exactly these values)."""
    config = {
        "cloudrepo:networkNode": {"host": host, "port": port},
        "cloudrepo:ssh": {"user": user, "privateKeyPath": "k", "knownHostsPath": "kh"},
    }
    out = outputs()
    out["vms"]["1002"]["cloudInit"].update(user=guest_user, addresses={"eth0": address})
    try:
        jump = jump_host(config, Path("/p"))
        guest = guest_access(out, SLICE, 1002)
    except (AccessError, ValueError) as exc:
        assert str(exc)
        return
    with tempfile.TemporaryDirectory() as tmp:
        files = make(jump, guest, Path(tmp))
        text = files.config(1002).read_text()
        note(text)
        assert len(text.splitlines()) == len(
            config_text(JUMP_HOST, GUEST_1002, files, identity=False, batch=True).splitlines()
        )
        assert ssh_g(files, 1002)["hostname"] == [guest.address] and ssh_g(files, 1002)["user"] == [
            guest_user
        ]
        seen = ssh_g(files, 1002, JUMP)
        assert (seen["hostname"], seen["user"], seen["port"]) == ([host.lower()], [user], [str(port)])


@given(
    command=st.lists(
        st.one_of(hostile_text(), st.sampled_from(["-oX=y", "--", ";", "$(id)", "'", "*"])), max_size=6
    )
)
@fuzz_settings(ci=150, long=3000)
def test_the_command_is_one_argument_after_the_destination(command: list[str]) -> None:
    command = [c for c in command if "\0" not in c]  # no argv holds a NUL
    argv = ssh_argv(Files(Path("/tmp/x")), 1002, command)
    assert argv[:5] == ["ssh", "-F", "/tmp/x/ssh_config.1002", "--", GUEST]
    if command:
        assert len(argv) == 6 and shlex.split(argv[5]) == command
    else:
        assert len(argv) == 5


# --- the verbs, in-process ---------------------------------------------------------------------------


@contextlib.contextmanager
def project(secret: bool) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="cloudrepo-ssh-test-") as tmp:
        root = Path(tmp)
        (root / "Pulumi.yaml").write_text("name: cloudrepo\nruntime: python\n")
        (root / "hosts_known").write_text("[127.0.0.1]:2200 " + public_key() + "\n")
        (root / "hosts_key").write_text("key file\n")
        ssh: dict[str, Any] = {"user": "root", "knownHostsPath": "hosts_known"}
        config: dict[str, Any] = {"cloudrepo:networkNode": {"host": "127.0.0.1", "port": 2200}}
        if secret:
            config["cloudrepo:sshPrivateKey"] = {"secure": "v1:ciphertext"}
        else:
            ssh["privateKeyPath"] = "hosts_key"
        config["cloudrepo:ssh"] = ssh
        stackfile.write(stackfile.stack_file(root, SLICE), {"encryptionsalt": "v1:fake", "config": config})
        FakeSlices.backend = {SLICE: outputs()}
        FakeSlices.broken = False
        yield root


class Recorder:
    """Stands in for `subprocess.run` of `ssh`: records each argv with what its files held then."""

    def __init__(self, status: dict[int, int] | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.status = status or {}

    def __call__(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        config = Path(argv[2])
        root = config.parent
        key = root / "hosts_key"
        self.calls.append(
            {
                "argv": argv,
                "config": config.read_text(),
                "key_mode": stat.S_IMODE(key.lstat().st_mode),
                "key_text": key.read_text(),
                "key_link": key.is_symlink(),
                "root_mode": stat.S_IMODE(root.stat().st_mode),
                "known": (root / "guests_known_hosts").read_text(),
                "root": root,
            }
        )
        vm = int(config.suffix[1:])
        return subprocess.CompletedProcess(argv, self.status.get(vm, 0), b"vm%d\n" % vm, b"")


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    rec = Recorder()
    monkeypatch.setattr(cli, "Slices", FakeSlices)
    monkeypatch.setattr(cli, "apply_environment", lambda: None)
    monkeypatch.setattr(FakeSlices, "secrets", {(SLICE, "cloudrepo:sshPrivateKey"): SECRET})
    monkeypatch.setattr(guestssh.subprocess, "run", rec)
    monkeypatch.setattr(guestssh.shutil, "which", lambda name: "/usr/bin/ssh")
    return rec


def run(root: Path, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(["--project", str(root), *argv])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
    return code, out.getvalue(), err.getvalue()


def test_ssh_passes_the_command_and_its_status_and_keeps_the_secret_out_of_argv(recorder: Recorder) -> None:
    recorder.status = {1002: 7}
    with project(secret=True) as root:
        code, _, err = run(root, "ssh", SLICE, "1002", "--", "sh", "-c", "exit 7")
        assert code == 7, err
        (call,) = recorder.calls
        assert call["argv"] == [
            "/usr/bin/ssh",
            "-F",
            str(call["root"] / "ssh_config.1002"),
            "--",
            GUEST,
            "sh -c 'exit 7'",
        ]
        assert call["key_text"] == SECRET and call["key_mode"] == 0o600 and not call["key_link"]
        assert call["root_mode"] == 0o700
        assert not any("secretbody" in a for a in call["argv"]) and "secretbody" not in call["config"]
        assert not call["root"].exists(), "the run's directory (with the key) is removed"
        known = guestssh.slice_known_hosts(root, SLICE)
        assert stat.S_IMODE(known.stat().st_mode) == 0o600 and call["known"] == known.read_text()
        assert "10.60.7.10 ssh-ed25519 " in call["known"] and "192.168.120.11 ssh-ed25519 " in call["known"]


def test_ssh_with_a_key_file_links_it(recorder: Recorder) -> None:
    with project(secret=False) as root:
        (root / "mine").write_text("k\n")
        code, _, err = run(root, "ssh", SLICE, "1003", "-i", str(root / "mine"), "--", "ip", "-4", "--", "a")
        assert code == 0, err
        (call,) = recorder.calls
        assert call["key_link"] and call["argv"][-1] == "ip -4 -- a"
        assert "IdentitiesOnly yes" in call["config"].split(f"Host {GUEST}")[1]
        assert "HostName 192.168.120.11" in call["config"]


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["ssh", "nope", "1002"], "no slice 'nope'"),
        (["ssh", SLICE, "1009"], "has no VM 1009"),
        (["ssh", SLICE, "1005"], "is not launched"),
        (["ssh", SLICE, "1004"], "has no cloud-init"),
        (["ssh", SLICE, "1002", "-i", "/nonexistent/key"], "-i '/nonexistent/key': not a file"),
        (["exec", SLICE, "--vm", "1004", "--", "true"], "has no cloud-init"),
    ],
)
def test_what_cannot_be_reached_is_an_error_before_ssh(
    recorder: Recorder, argv: list[str], words: str
) -> None:
    with project(secret=True) as root:
        code, _, err = run(root, *argv)
        assert code == 1 and words in err and "Traceback" not in err, err
        assert recorder.calls == []


def test_exec_runs_every_guest_and_tabulates(recorder: Recorder) -> None:
    recorder.status = {1003: 3}
    with project(secret=True) as root:
        code, out, _ = run(root, "exec", SLICE, "--", "hostname")
        assert code == 1
        assert sorted(c["argv"][-1] for c in recorder.calls) == ["hostname", "hostname"]
        assert "BatchMode yes" in recorder.calls[0]["config"].split(f"Host {GUEST}")[1]
        lines = out.splitlines()
        assert lines[0].split() == ["vm", "exit", "output"]
        assert lines[1].split() == ["1002", "0", "vm1002"] and lines[2].split() == ["1003", "3", "vm1003"]
        code, out, _ = run(root, "exec", SLICE, "--vm", "1002", "--json", "--", "hostname")
        assert code == 0 and json.loads(out) == [{"vm": 1002, "exit": 0, "stdout": "vm1002\n", "stderr": ""}]
        code, _, err = run(root, "exec", SLICE)
        assert code == 2 and "give the command after `--`" in err


def test_exec_table_escapes_control_characters() -> None:
    text = tables.exec_table([(1002, 0, "a\x1b[31m\tb\nsecond\n"), (1003, 255, "")])
    assert "\x1b" not in text and "^[[31m" in text
    assert text.splitlines()[1:] == ["1002  0     a^[[31m b", "            second", "1003  255"]


def test_the_words_after_the_first_double_dash_are_the_command() -> None:
    args = cli.parse(["--project", "ssh", "ssh", SLICE, "1002", "-i", "k", "--", "ip", "-4", "--", "x"])
    assert (args.project, args.name, args.vm, args.identity) == ("ssh", SLICE, 1002, "k")
    assert args.command == ["ip", "-4", "--", "x"]
    assert cli.parse(["ssh", SLICE, "1002"]).command == []
    assert cli.parse(["show", SLICE]).name == SLICE


def test_the_private_files_are_0600_in_a_0700_directory(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "known_hosts"
    guestssh.write_private(path, "x\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert os.listdir(path.parent) == ["known_hosts"]
