"""`cloudrepo ssh` and `cloudrepo exec` into the real cloud image: two VMs on different workers of a slice
deployed by the real engine, each booted with a NoCloud seed that holds a key of this test and the
guest's host key; OpenSSH reaches them through the testbed's network node as ProxyJump (its host key
verified against the hosts' known_hosts, the hosts' key given as the secret `cloudrepo:sshPrivateKey`),
each guest verified against the slice's known_hosts written from the outputs.

`hostname` prints the seed's host name, `ip -4 addr` shows every reserved address, a key not in the seed
is refused (255), the command's exit status passes through (`sh -c 'exit 7'` -> 7) and `exec` returns
both VMs' results.

Behind the `cloud_image` mark (`make test-long`, `--cloud-image`): two TCG guests boot in a few minutes.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from cloudrepo import guestssh
from cloudrepo.access import guest_access, known_hosts_text
from cloudrepo.engine import decrypt_config
from components.cloudinit import seed_documents, seed_spec
from components.seed_image import new_host_key, write_seed_image
from lab import cloud_image
from tests.integration.slicekit import SliceStack
from tests.integration.test_e2e_cloud_image import console_tail, keypair, qemu
from tests.labfixtures import Testbed

pytestmark = pytest.mark.cloud_image

SLICE = "e2e-guest-ssh"
POOL = 380
VMS = {7601: ("worker1", "alpha7601"), 7602: ("worker2", "bravo7602")}
USER = "op"
DEADLINE = 900
"""Seconds both TCG guests may take from QEMU's start to a working login (about a minute each, idle)."""


def boot(
    stack: ExitStack, tmp: Path, image: dict[str, str], vm: int, entry: dict[str, Any], pub: str
) -> dict[str, Any]:
    """The cloud image booted by hand on the VM's TAPs (in its worker's namespaces) with a seed for
    `USER` and `pub`; the access facts the outputs give a VM with cloud-init."""
    worker, hostname = VMS[vm]
    host_key = new_host_key(f"vm{vm}")
    spec = seed_spec(
        {
            "vm": vm,
            "hostname": hostname,
            "user": USER,
            "sshAuthorizedKeys": [pub],
            "interfaces": {name: i["mac"] for name, i in entry["interfaces"].items()},
            "hostKey": host_key.model_dump(),
        }
    )
    seed = write_seed_image(seed_documents(spec), tmp / f"seed{vm}.img")
    disk = tmp / f"disk{vm}.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", image["image"], str(disk)],
        check=True,
    )
    console, pidfile = tmp / f"console{vm}.log", tmp / f"qemu{vm}.pid"
    argv = [
        "qemu-system-x86_64", "-accel", "tcg", "-m", "512", "-display", "none", "-monitor", "none",
        "-serial", f"file:{console}", "-daemonize", "-pidfile", str(pidfile),
        "-kernel", image["kernel"], "-initrd", image["initrd"], "-append", image["append"],
        "-drive", f"file={disk},if=virtio,format=qcow2",
        "-drive", f"file={seed},if=virtio,format=raw,readonly=on",
        *entry["qemuNetArgs"],
    ]  # fmt: skip
    stack.enter_context(qemu(worker, argv, pidfile))
    return {
        "user": USER,
        "hostname": hostname,
        "addresses": {n: i["ip"] for n, i in entry["interfaces"].items() if not i["parked"]},
        "hostKey": host_key.public,
        "ssh": f"cloudrepo ssh {SLICE} {vm}",
    }


def test_ssh_and_exec_reach_two_guests_through_the_network_node(
    slice_stack: Callable[..., SliceStack],
    testbed: Testbed,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    image = cloud_image.build()
    vms = [
        {"id": 7601, "worker": "worker1", "dataInterfaces": 1, "internet": True},
        {"id": 7602, "worker": "worker2", "dataInterfaces": 1},
    ]
    stack = slice_stack(SLICE, POOL, vms, [["7601.eth1", "7602.eth1"]], secret_key=True)
    stack.up()
    outputs = stack.outputs()
    project = stack.cli.project_dir
    for key, value in stack.cli.env().items():  # the engine's backend and passphrase, for the secret
        if key.startswith("PULUMI_") or key == "PATH":
            monkeypatch.setenv(key, value)

    good, other = tmp_path / "good", tmp_path / "other"
    pub = keypair(good)
    keypair(other)
    with ExitStack() as running:
        for vm in VMS:
            entry = outputs["vms"][str(vm)]
            entry["cloudInit"] = boot(running, tmp_path, image, vm, entry, pub)
            entry["running"] = True  # booted by hand: what the outputs say of a launched VM

        def ssh(vm: int, *command: str, key: Path = good) -> tuple[int, str, str]:
            capfd.readouterr()
            code = guestssh.ssh(outputs, project, SLICE, vm, str(key), command, decrypt_config)
            out, err = capfd.readouterr()
            return code, out, err

        t0 = time.monotonic()
        results = guestssh.exec_all(outputs, project, SLICE, [], str(good), ["hostname"], decrypt_config, 60)
        while any(r.exit for r in results) and time.monotonic() - t0 < DEADLINE:
            time.sleep(2)
            results = guestssh.exec_all(
                outputs, project, SLICE, [], str(good), ["hostname"], decrypt_config, 60
            )
        consoles = "\n".join(console_tail(tmp_path / f"console{vm}.log") for vm in VMS)
        assert all(r.exit == 0 for r in results), f"{results}\n{consoles}"
        print(f"both guests answered in {time.monotonic() - t0:.0f} s")
        assert [(r.vm, r.stdout.strip()) for r in results] == [(7601, "alpha7601"), (7602, "bravo7602")]

        known = guestssh.slice_known_hosts(project, SLICE)
        pinned = [guest_access(outputs, SLICE, vm) for vm in VMS]
        assert known.read_text() == known_hosts_text(pinned) and oct(known.stat().st_mode)[-3:] == "600"
        assert pinned[0].address == outputs["vms"]["7601"]["interfaces"]["eth0"]["ip"]  # VLAN 400 first
        assert pinned[1].address == outputs["vms"]["7602"]["interfaces"]["eth1"]["ip"]  # its link

        code, out, err = ssh(7602, "hostname")
        assert (code, out.strip()) == (0, "bravo7602"), err
        for vm in VMS:
            code, out, err = ssh(vm, "ip", "-4", "-o", "addr", "show")
            assert code == 0, err
            reserved = set(outputs["vms"][str(vm)]["cloudInit"]["addresses"].values())
            held = {f[3].split("/")[0] for f in map(str.split, out.splitlines()) if f[2] == "inet"}
            assert reserved <= held, (reserved, out)
        code, _, err = ssh(7601, "sh", "-c", "exit 7")
        assert code == 7, err
        code, out, err = ssh(7601, "printf", "%s|", "a b", "$(id)", "--")
        assert (code, out) == (0, "a b|$(id)|--|"), err  # the command's words arrive as they were
        code, _, err = ssh(7601, "hostname", key=other)
        assert code == guestssh.SSH_STATUS and "Permission denied (publickey)" in err, err

    left = [p for p in Path(os.environ.get("TMPDIR", "/tmp")).glob("cloudrepo-ssh-*") if p.owner() == "root"]
    assert not [p for p in left if p.stat().st_mtime > t0], f"private directories left behind: {left}"
