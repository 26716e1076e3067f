"""QemuVm against the testbed over real SSH: a real TCG guest on a real TAP; create twice, read after a
kill (drift), update restarts it with the same argv, delete twice leaves no process, socket or directory."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab import console, image
from lab.common import host_paths
from providers.kinds.qemu_vm import qemu_argv
from providers.pipeline import HostProvider
from tests.functional import kit
from tests.functional.kit import outs
from tests.functional.test_prov_functional import configure, endpoint
from tests.labfixtures import Testbed
from vocabulary.specs import TapPortSpec

pytestmark = pytest.mark.integration

SLICE = "fn-qemu"
VM = 7501


def put_image(testbed: Testbed, local: str) -> dict[str, str]:
    """Copy a boot file to worker1's image store over SFTP (what the program does with pulumi-command)."""
    data = Path(local).read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    remote = f"/var/lib/cloudrepo/images/{sha}"
    client = testbed.ssh("worker1")
    try:
        client.exec_command("mkdir -p /var/lib/cloudrepo/images")[1].channel.recv_exit_status()
        with client.open_sftp() as sftp:
            sftp.put(local, remote)
    finally:
        client.close()
    return {"path": remote, "sha256": sha}


@pytest.fixture
def tap(testbed: Testbed) -> Iterator[dict[str, Any]]:
    spec = TapPortSpec(
        slice=SLICE,
        host=endpoint(testbed, "worker1"),
        name=f"tap_{VM}_eth0",
        vm=VM,
        iface="eth0",
        mac="52:54:00:1d:4d:00",
        vlan=4094,
        parked=True,
    )
    provider = HostProvider("TapPort")
    configure(provider, testbed)
    provider.create(spec.inputs())
    yield spec.inputs()
    provider.delete("", spec.inputs())


def test_qemu_vm_lifecycle(testbed: Testbed, tap: dict[str, Any]) -> None:
    guest = image.guest()
    props = {
        "slice": SLICE,
        "host": endpoint(testbed, "worker1"),
        "vm": VM,
        "binary": "qemu-system-x86_64",
        "accel": "tcg",
        "memoryMb": 96,
        "kernel": put_image(testbed, guest["kernel"]),
        "initrd": put_image(testbed, guest["initrd"]),
        "append": "console=ttyS0 quiet",
        "netArgs": [
            "-netdev",
            f"tap,id=net0,ifname=tap_{VM}_eth0,script=no,downscript=no",
            "-device",
            "virtio-net-pci,netdev=net0,mac=52:54:00:1d:4d:00",
        ],
    }
    provider = HostProvider("QemuVm")
    configure(provider, testbed)
    checked = provider.check({}, props)
    assert not checked.failures, checked.failures
    assert checked.inputs is not None
    props = checked.inputs
    spec = provider.spec(props)
    binary = testbed.run("worker1", "command -v qemu-system-x86_64")[1].strip()
    vm_dir = host_paths("worker1").state / "vms" / str(VM)
    try:
        created = provider.create(props)
        assert created.id == f"worker1/vm/{VM}"
        assert outs(created)["observed"]["running"] and outs(created)["drift"] == []
        pid = int((vm_dir / "qemu.pid").read_text())
        assert Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1] == qemu_argv(spec, binary)
        assert (vm_dir / "owner").read_text() == f"{SLICE}\n"
        # the guest boots and answers on its serial console
        sock = vm_dir / "console.sock"
        console.wait_ready(sock, timeout=90)
        assert console.run(sock, ["cat", "/sys/class/net/eth0/address"]).stdout.strip() == "52:54:00:1d:4d:00"

        # create again: adopts the running VM, changes nothing
        again = provider.create(props)
        assert outs(again)["observed"]["changed"] == []
        assert int((vm_dir / "qemu.pid").read_text()) == pid

        # killed by hand: read reports drift, update starts it again with the same argv
        testbed.run("worker1", f"kill -KILL {pid}; {kit.until_gone(pid)}")  # gone before the read looks
        read = provider.read(created.id, outs(created))
        assert outs(read)["drift"] == ["QEMU not running"] and not outs(read)["observed"]["running"]
        updated = provider.update(created.id, outs(read), props)
        assert outs(updated)["observed"]["running"]
        new_pid = int((vm_dir / "qemu.pid").read_text())
        assert new_pid != pid
        assert Path(f"/proc/{new_pid}/cmdline").read_bytes().decode().split("\0")[:-1] == qemu_argv(
            spec, binary
        )
        assert outs(provider.read(created.id, outs(updated)))["drift"] == []
    finally:
        provider.delete("", props)
    assert not vm_dir.exists()
    provider.delete("", props)  # already gone: fine
