"""The real guest: the Debian cloud image (`python -m lab image --cloud`) boots under QEMU TCG on a slice's
TAPs with a NoCloud seed made from a key this test generated, takes its reserved leases (its parked eth2
is left without DHCP, which would hold the boot), and lets in that
key only: `hostname` over SSH (from the network node, which holds `.1` on the link subnet) is the seed's,
the guest's host key is the one put in its seed (a known_hosts of that key alone verifies it; another key
is refused), and a key not in the seed, or a password, is refused. Booted again on the same disk with a
new seed that lists another key only, the guest lets in the new key and refuses the one taken out.

Behind the `cloud_image` mark (`make test-long`): the image takes a minute or two to build and the guest
about a minute to boot under TCG. Figures: the testbed's `figures/cloud-image-times.json`."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from components.cloudinit import known_hosts_line, seed_documents, seed_spec
from components.seed_image import new_host_key, write_seed_image
from lab import cloud_image
from lab.common import host_ns, lab_dir
from lab.procs import alive
from tests.integration.slicekit import SliceStack
from tests.labfixtures import Testbed

pytestmark = pytest.mark.cloud_image

SLICE = "e2e-cloud"
POOL = 360
VM = 7501
HOSTNAME = "probe7501"
USER = "tester"
SSH_DEADLINE = 600
"""Seconds a TCG guest may take from QEMU's start to a working SSH login (about a minute when idle)."""


def keypair(path: Path) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)], check=True
    )
    return path.with_suffix(".pub").read_text().strip()


def ssh_argv(key: Path, known_hosts: Path, address: str, *extra: str) -> list[str]:
    """OpenSSH from inside the network node's namespace: no user config, no agent, host key verified."""
    return [
        "ip", "netns", "exec", host_ns("network"),
        "ssh", "-F", "/dev/null", "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
        "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
        *extra, f"{USER}@{address}",
    ]  # fmt: skip


def ssh(key: Path, known_hosts: Path, address: str, *command: str, extra: tuple[str, ...] = ()) -> Any:
    return subprocess.run(
        [*ssh_argv(key, known_hosts, address, *extra), *command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def console_tail(console: Path) -> str:
    return "console:\n" + console.read_text(errors="replace")[-3000:] if console.exists() else "(no console)"


def ready(key: Path, known_hosts: Path, address: str, console: Path) -> tuple[float, float]:
    """Seconds until `key` logs in and `hostname` is the seed's, then until cloud-init is done (it
    restarts sshd once it has set it up: the checks after it must not race that restart)."""
    t0 = time.monotonic()
    got = ssh(key, known_hosts, address, "hostname")
    while got.returncode != 0 and time.monotonic() - t0 < SSH_DEADLINE:
        time.sleep(1)
        got = ssh(key, known_hosts, address, "hostname")
    login = round(time.monotonic() - t0, 1)
    assert got.returncode == 0, f"no SSH login in {SSH_DEADLINE} s: {got.stderr}\n{console_tail(console)}"
    assert got.stdout.strip() == HOSTNAME
    done = ssh(key, known_hosts, address, "cloud-init", "status", "--wait")
    while "status: done" not in done.stdout and time.monotonic() - t0 < SSH_DEADLINE:
        time.sleep(1)
        done = ssh(key, known_hosts, address, "cloud-init", "status", "--wait")
    assert done.returncode == 0 and "status: done" in done.stdout, f"{done}\n{console_tail(console)}"
    return login, round(time.monotonic() - t0, 1)


@contextmanager
def qemu(worker: str, argv: list[str], pidfile: Path) -> Iterator[None]:
    """QEMU started in `worker`'s namespaces (where its TAPs are), stopped by its pid at the end."""
    subprocess.run(["ip", "netns", "exec", host_ns(worker), *argv], check=True, timeout=60)
    pid = int(pidfile.read_text())
    try:
        yield
    finally:
        cmdline = Path(f"/proc/{pid}/cmdline")
        if cmdline.exists() and str(pidfile).encode() in cmdline.read_bytes():
            subprocess.run(["kill", "-TERM", str(pid)], check=False)
            deadline = time.monotonic() + 20
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if alive(pid):
                subprocess.run(["kill", "-KILL", str(pid)], check=False)


def test_cloud_image_takes_its_seed_and_only_its_key(
    slice_stack: Callable[..., SliceStack], testbed: Testbed, tmp_path: Path
) -> None:
    figures: dict[str, Any] = {}
    t0 = time.monotonic()
    image = cloud_image.build()
    figures["image_seconds"] = round(time.monotonic() - t0, 1)

    vms = [
        {"id": VM, "worker": "worker1", "dataInterfaces": 2, "internet": True},  # eth2 on no link
        {"id": VM + 1, "worker": "worker2", "dataInterfaces": 1},
    ]
    stack = slice_stack(SLICE, POOL, vms, [[f"{VM}.eth1", f"{VM + 1}.eth1"]])
    stack.up()
    vm = stack.outputs()["vms"][str(VM)]
    leases = {name: i["ip"] for name, i in vm["interfaces"].items() if i["ip"]}
    assert set(leases) == {"eth0", "eth1"} and set(vm["interfaces"]) == {"eth0", "eth1", "eth2"}, vm

    good, other = tmp_path / "good", tmp_path / "other"
    good_pub = keypair(good)
    keypair(other)  # a key the guest was never given
    host_key = new_host_key(f"vm{VM}")
    spec = seed_spec(
        {
            "vm": VM,
            "hostname": HOSTNAME,
            "user": USER,
            "sshAuthorizedKeys": [good_pub],
            "interfaces": {name: i["mac"] for name, i in vm["interfaces"].items()},
            "parked": ["eth2"],
            "hostKey": host_key.model_dump(),
        }
    )
    t1 = time.monotonic()
    seed = write_seed_image(seed_documents(spec), tmp_path / "seed.img")
    figures["seed_seconds"] = round(time.monotonic() - t1, 3)

    disk = tmp_path / "disk.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", image["image"], str(disk)],
        check=True,
    )
    console, pidfile = tmp_path / "console.log", tmp_path / "qemu.pid"
    argv = [
        "qemu-system-x86_64", "-accel", "tcg", "-m", "512", "-display", "none", "-monitor", "none",
        "-serial", f"file:{console}", "-daemonize", "-pidfile", str(pidfile),
        "-kernel", image["kernel"], "-initrd", image["initrd"], "-append", image["append"],
        "-drive", f"file={disk},if=virtio,format=qcow2",
        "-drive", f"file={seed},if=virtio,format=raw,readonly=on",
        *vm["qemuNetArgs"],
    ]  # fmt: skip
    pinned = tmp_path / "known_hosts"
    pinned.write_text("".join(known_hosts_line(ip, host_key) for ip in leases.values()))
    address = leases["eth1"]  # the link's subnet; eth0's (VLAN 400) is tried too

    with qemu("worker1", argv, pidfile):
        figures["boot_to_ssh_seconds"], figures["boot_to_cloud_init_done_seconds"] = ready(
            good, pinned, address, console
        )

        addrs = ssh(good, pinned, address, "ip", "-4", "-o", "addr", "show")
        assert addrs.returncode == 0, addrs.stderr
        held = {
            (f[1], f[3].split("/")[0]) for f in map(str.split, addrs.stdout.splitlines()) if f[2] == "inet"
        }
        assert set(leases.items()) <= held, (leases, addrs.stdout)

        parked = ssh(good, pinned, address, "ip", "-o", "addr", "show", "dev", "eth2")  # no DHCP waited for
        assert parked.returncode == 0 and " inet " not in parked.stdout, parked
        assert (
            vm["interfaces"]["eth2"]["mac"]
            in ssh(good, pinned, address, "cat", "/sys/class/net/eth2/address").stdout
        )

        by_eth0 = ssh(good, pinned, leases["eth0"], "hostname")
        assert by_eth0.returncode == 0 and by_eth0.stdout.strip() == HOSTNAME, by_eth0.stderr

        refused = ssh(other, pinned, address, "hostname")
        assert refused.returncode == 255 and "Permission denied (publickey)" in refused.stderr, refused.stderr
        password = ssh(
            good,
            pinned,
            address,
            "hostname",
            extra=(
                "-o",
                "PubkeyAuthentication=no",
                "-o",
                "PreferredAuthentications=password,keyboard-interactive",
            ),
        )
        assert password.returncode == 255 and "Permission denied (publickey)" in password.stderr, (
            password.stderr
        )

        stranger = tmp_path / "known_hosts.other"
        stranger.write_text(known_hosts_line(address, new_host_key("someone-else")))
        unverified = ssh(good, stranger, address, "hostname")
        assert unverified.returncode == 255 and "Host key verification failed" in unverified.stderr, (
            unverified.stderr
        )

    # the same disk with a new seed that lists the other key only: a new instance, the old key refused
    renewed = spec.model_copy(update={"ssh_authorized_keys": [other.with_suffix(".pub").read_text().strip()]})
    assert seed_documents(renewed).instance_id != seed_documents(spec).instance_id
    write_seed_image(seed_documents(renewed), seed)
    with qemu("worker1", argv, pidfile):
        figures["reseeded_boot_to_ssh_seconds"], _ = ready(other, pinned, address, console)
        dropped = ssh(good, pinned, address, "hostname")
        assert dropped.returncode == 255 and "Permission denied (publickey)" in dropped.stderr, dropped.stderr
        keys = ssh(other, pinned, address, "cat", f"/home/{USER}/.ssh/authorized_keys")
        assert keys.stdout.split("\n")[:-1] == renewed.ssh_authorized_keys, keys.stdout

    out = lab_dir() / "figures" / "cloud-image-times.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print("cloud image times:", figures)
