"""`SliceComponent` with launched VMs under Pulumi mocks: copies once per worker, QemuVm after its TAPs and
copies, host keys pinned, the private key a secret, the `console` and `running` outputs; the copies'
check-and-place and the cleaning of `incoming/` run here."""

from __future__ import annotations

import hashlib
import stat
import subprocess
from pathlib import Path
from typing import Any

import pulumi
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from components import vm_resources as vms
from components.allocation import allocate_vlans
from components.config import load_config
from components.plan import build_plan
from components.slice import SliceComponent
from tests.cfgkit import raw_config, slice_with, with_changes
from tests.unit.components.test_slice_component import install

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGfFAQWnbMwM0xRNDcl1aJuK4nl7LVSNUX4lKsRy/wRs"
DYN = "pulumi-python:dynamic:"
SECRET_SIG = "4dabf18193072939515e22adb298388d"  # pulumi.runtime.rpc._special_sig_key


def secret(value: dict[str, Any]) -> dict[str, Any]:
    """The value of a serialized secret (and fail when it is not one)."""
    assert value.get(SECRET_SIG) == "1b47061264138c4ac30d75fd1eb44270", f"not a secret: {value}"
    return dict(value["value"])


def test_launched_vms_under_mocks(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "vmlinuz").write_bytes(b"kernel")
    (tmp_path / "images" / "initrd.gz").write_bytes(b"initrd")
    (tmp_path / "id").write_text("PRIVATE KEY TEXT\n")
    (tmp_path / "known_hosts").write_text(f"10.0.10.1 {HOST_KEY}\n[10.0.10.2]:2222 {HOST_KEY}\n")
    launch = {"kernel": "images/vmlinuz", "initrd": "images/initrd.gz", "accel": "tcg"}
    vms = [
        {"id": 1002, "worker": "worker1", "dataInterfaces": 1, "internet": True, "launch": launch},
        {"id": 1003, "worker": "worker2", "dataInterfaces": 1, "launch": launch},
        {"id": 1004, "worker": "worker1", "dataInterfaces": 0, "launch": launch},
        {"id": 1005, "worker": "worker2", "dataInterfaces": 0},
    ]
    cfg = with_changes(
        workers={"worker1": {"host": "10.0.10.1"}, "worker2": {"host": "10.0.10.2", "port": 2222}},
        ssh={
            "user": "root",
            "privateKeyPath": str(tmp_path / "id"),
            "knownHostsPath": str(tmp_path / "known_hosts"),
            "sudo": True,
        },
        slice=slice_with(vms=vms, links=[["1002.eth1", "1003.eth1"]]),
    )
    config = load_config(raw_config(cfg), "dev", tmp_path)
    plan = build_plan(config, allocate_vlans(config.links, config.pool, {}))
    monitor, _ = install()
    seen: dict[str, Any] = {}

    @pulumi.runtime.test
    def program() -> None:
        comp = SliceComponent(config.slice_name, plan)
        seen["outputs"] = comp.outputs

    program()
    reg = monitor.registered
    by_type: dict[str, list[str]] = {}
    for name, r in reg.items():
        by_type.setdefault(r["type"], []).append(name)
    # kernel + initrd once per worker (1002 and 1004 share worker1's), one directory command per worker
    assert len(by_type["command:remote:CopyToRemote"]) == 4
    assert sorted(n for n in by_type["command:remote:Command"] if "-images-" in n) == [
        "demo-images-worker1",
        "demo-images-worker2",
    ]
    # the image cache is the SSH user's alone; the slice's leftovers in incoming/ go at create and delete
    images = reg["demo-images-worker1"]["inputs"]
    assert "install -d -m 0711 /var/lib/cloudrepo" in images["create"]
    assert (
        "install -d -m 0700 -o root /var/lib/cloudrepo/images /var/lib/cloudrepo/images/incoming"
        in (images["create"])
    )
    assert images["create"].endswith(images["delete"]) and images["delete"].endswith(
        " sh /var/lib/cloudrepo/images/incoming demo"
    )
    assert sorted(by_type[DYN + "QemuVm"]) == ["demo-vm-1002", "demo-vm-1003", "demo-vm-1004"]
    vm = reg["demo-vm-1002"]
    deps = set(vm["dependencies"])
    for tap in ("tap-1002-eth0", "tap-1002-eth1"):
        assert reg[f"demo-{tap}"]["urn"] in deps
    places = [n for n in by_type["command:remote:Command"] if n.startswith("demo-image-worker1-")]
    assert len(places) == 2 and {reg[n]["urn"] for n in places} <= deps
    assert vm["inputs"]["netArgs"] == seen["outputs"]["vms"]["1002"]["qemuNetArgs"]
    copy = reg[by_type["command:remote:CopyToRemote"][0]]
    conn = secret(copy["inputs"]["connection"])  # it holds the private key: secret as a whole
    assert conn["privateKey"] == "PRIVATE KEY TEXT\n"
    assert conn["hostKey"] == HOST_KEY and conn["user"] == "root"
    assert copy["inputs"]["remotePath"].startswith("/var/lib/cloudrepo/images/incoming/demo-")
    copies = [reg[n] for n in by_type["command:remote:CopyToRemote"]]
    w2 = next(
        secret(c["inputs"]["connection"]) for c in copies if secret(c["inputs"]["connection"])["port"] == 2222
    )
    assert w2["host"] == "10.0.10.2"
    launched = seen["outputs"]["vms"]["1002"]
    assert launched["console"] == "/var/lib/cloudrepo/vms/1002/console.sock"
    assert isinstance(launched["running"], pulumi.Output)  # from the QemuVm's `observed`
    assert "console" not in seen["outputs"]["vms"]["1005"]


def sh(body: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", body, "sh", *args], capture_output=True, text=True, timeout=30)


def test_a_copy_that_fails_its_check_leaves_nothing_in_incoming(tmp_path: Path) -> None:
    incoming, images = tmp_path / "incoming", tmp_path
    incoming.mkdir()
    good = hashlib.sha256(b"kernel").hexdigest()
    sent = incoming / f"demo-{good}"
    sent.write_bytes(b"kernel (cut short)")
    bad = sh(vms._PLACE, str(sent), str(images / good), good)
    assert bad.returncode == 1 and f"want {good}" in bad.stderr
    assert not sent.exists() and not (images / good).exists()
    sent.write_bytes(b"kernel")
    sent.chmod(0o644)
    assert sh(vms._PLACE, str(sent), str(images / good), good).returncode == 0
    assert not sent.exists() and (images / good).read_bytes() == b"kernel"
    assert stat.S_IMODE((images / good).stat().st_mode) == 0o600
    (images / good).chmod(0o644)  # placed before the cache was private: the next placement corrects it
    sent.write_bytes(b"kernel")
    assert sh(vms._PLACE, str(sent), str(images / good), good).returncode == 0
    assert not sent.exists() and stat.S_IMODE((images / good).stat().st_mode) == 0o600


SLICE_NAMES = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}", fullmatch=True)


@settings(max_examples=60, deadline=None)
@given(mine=SLICE_NAMES, others=st.lists(SLICE_NAMES, max_size=4))
def test_cleaning_incoming_removes_only_the_slices_copies(
    tmp_path_factory: pytest.TempPathFactory, mine: str, others: list[str]
) -> None:
    incoming = tmp_path_factory.mktemp("incoming")
    sums = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(2)]
    theirs = {incoming / f"{o}-{s}" for o in others if o != mine for s in sums}
    ours = {incoming / f"{mine}-{s}" for s in sums}
    for f in theirs | ours:
        f.write_bytes(b"x")
    assert sh(vms._CLEAN, str(incoming), mine).returncode == 0
    assert set(incoming.iterdir()) == theirs


def test_a_seeded_vm_under_mocks(tmp_path: Path) -> None:
    """A VM with cloud-init: its CloudSeed (documents as secrets) before its QemuVm, which carries the
    seed's hash; the VM's `cloudInit` output with the seed's host key."""
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "disk.qcow2").write_bytes(b"QFI\xfb rest")
    (tmp_path / "id").write_text("PRIVATE KEY TEXT\n")
    (tmp_path / "known_hosts").write_text(f"10.0.10.1 {HOST_KEY}\n")
    launch = {"image": "images/disk.qcow2", "accel": "tcg", "cloudInit": {"sshAuthorizedKeys": [HOST_KEY]}}
    cfg = with_changes(
        workers={"worker1": {"host": "10.0.10.1"}},
        ssh={
            "user": "root",
            "privateKeyPath": str(tmp_path / "id"),
            "knownHostsPath": str(tmp_path / "known_hosts"),
        },
        slice=slice_with(
            vms=[{"id": 1002, "worker": "worker1", "dataInterfaces": 0, "launch": launch}], links=[]
        ),
    )
    config = load_config(raw_config(cfg), "dev", tmp_path)
    plan = build_plan(config, allocate_vlans(config.links, config.pool, {}))
    monitor, _ = install()
    seen: dict[str, Any] = {}

    @pulumi.runtime.test
    def program() -> None:
        seen["outputs"] = SliceComponent(config.slice_name, plan).outputs

    program()
    reg = monitor.registered
    seed, vm = reg["demo-seed-1002"], reg["demo-vm-1002"]
    assert seed["type"] == DYN + "CloudSeed" and seed["urn"] in vm["dependencies"]
    docs = {key: secret_text(seed["inputs"][key]) for key in ("metaData", "userData", "networkConfig")}
    assert HOST_KEY.split()[1] in docs["userData"] and "instance-id: i-" in docs["metaData"]
    assert vm["inputs"]["seed"] == seed["inputs"]["sha256"]
    out = seen["outputs"]["vms"]["1002"]["cloudInit"]
    assert (out["user"], out["hostname"], out["ssh"]) == ("cloud", "vm1002", "cloudrepo ssh dev 1002")
    assert out["addresses"] == {} and isinstance(out["hostKey"], pulumi.Output)


def secret_text(value: Any) -> Any:
    assert isinstance(value, dict) and value.get(SECRET_SIG) == "1b47061264138c4ac30d75fd1eb44270", value
    return value["value"]
