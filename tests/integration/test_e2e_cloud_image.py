"""The real guest, from the slice config: the Debian cloud image (`python -m lab image --cloud`) is a VM's
`launch` (its disk image booted by direct kernel boot) with `cloudInit` (a key from the config, a user, a host
name, user-data of our own); the real engine makes its NoCloud seed on the worker and boots it under QEMU TCG
on the slice's TAPs. Over SSH from the network node (which holds `.1` on the link subnet and on VLAN 400):
`hostname` is the configured one, every reserved address of the outputs is in `ip -4 addr`, the host key is
the outputs' (a known_hosts made from it alone verifies the guest; another is refused), a key not in the
config and passwords are refused, the user-data ran. Then the config's keys change: `up` restarts the VM on
a new seed on the same disk, the new key logs in and the removed one is refused.

Behind the `cloud_image` mark (`make test-long`): the image takes a minute or two to build and the guest
about a minute to boot under TCG. Figures: the testbed's `figures/cloud-image-times.json`."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from components.cloudinit import known_hosts_line
from lab import cloud_image
from lab.common import host_ns, host_paths, lab_dir
from tests.integration.e2ekit import qemu_tcg
from tests.integration.slicekit import PULUMI_CHANGES, SliceStack, failure, lab_config, slice_section
from tests.labfixtures import Testbed

pytestmark = [pytest.mark.cloud_image, pytest.mark.timeout(1800)]
"""Two TCG boots, each allowed `SSH_DEADLINE`: more than the suite's 600 s per test on a busy machine."""

SLICE = "e2e-cloud"
POOL = 360
VM = 7501
HOSTNAME = "probe7501"
USER = "tester"
SSH_DEADLINE = 600
"""Seconds a TCG guest may take from QEMU's start to a working SSH login (about a minute when idle)."""
PASSWORDS_ONLY = (
    "-o",
    "PubkeyAuthentication=no",
    "-o",
    "PreferredAuthentications=password,keyboard-interactive",
)


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


SSH_CALL = 180
"""Seconds one SSH call may take (a TCG guest on a loaded machine answers slowly)."""


def ssh(key: Path, known_hosts: Path, address: str, *command: str, extra: tuple[str, ...] = ()) -> Any:
    """One OpenSSH call; a call that outlasts `SSH_CALL` is a result with status 124 (`ready` polls on)."""
    argv = [*ssh_argv(key, known_hosts, address, *extra), *command]
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=SSH_CALL, check=False)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, 124, "", f"no answer in {SSH_CALL} s")


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
    done = ssh(key, known_hosts, address, "cloud-init", "status")
    while "status: done" not in done.stdout and time.monotonic() - t0 < SSH_DEADLINE:
        time.sleep(2)  # polled: `--wait` can outlast one call's timeout on a busy machine
        done = ssh(key, known_hosts, address, "cloud-init", "status")
    assert done.returncode == 0 and "status: done" in done.stdout, f"{done}\n{console_tail(console)}"
    return login, round(time.monotonic() - t0, 1)


def qemu_pid(testbed: Testbed) -> int:
    return int(testbed.run("worker1", f"cat /var/lib/cloudrepo/vms/{VM}/qemu.pid")[1])


def test_the_cloud_image_from_the_config_lets_in_the_configured_keys_only(
    slice_stack: Callable[..., SliceStack], testbed: Testbed, tmp_path: Path
) -> None:
    figures: dict[str, Any] = {}
    t0 = time.monotonic()
    image = cloud_image.build()
    figures["image_seconds"] = round(time.monotonic() - t0, 1)

    good, other = tmp_path / "good", tmp_path / "other"
    good_pub, other_pub = keypair(good), keypair(other)
    keypair(tmp_path / "stranger")  # a key never in the config
    files = tmp_path / "userdata"
    files.mkdir()
    (files / "user.yaml").write_text(
        "#cloud-config\nwrite_files:\n  - {path: /etc/cloudrepo-probe, content: from-user-data}\n"
    )
    launch = {
        "image": image["image"],
        "kernel": image["kernel"],
        "initrd": image["initrd"],
        "append": image["append"],
        "memoryMb": 512,
        "cloudInit": {"hostname": HOSTNAME},
    }
    vms = [
        {
            "id": VM,
            "worker": "worker1",
            "dataInterfaces": 2,
            "internet": True,
            "launch": launch,
        },  # eth2 parked
        {"id": VM + 1, "worker": "worker2", "dataInterfaces": 1},
    ]
    links = [[f"{VM}.eth1", f"{VM + 1}.eth1"]]
    stack = slice_stack(SLICE, POOL, vms, links)
    qemu = qemu_tcg()["cloudrepo:qemu"]

    def config(keys: list[str]) -> dict[str, Any]:
        section = slice_section(POOL, vms, links)
        section["cloudrepo:slice"]["cloudInit"] = {
            "user": USER,
            "sshAuthorizedKeys": keys,
            "userData": str(files / "user.yaml"),
        }
        dirs = [*qemu["imageDirs"], str(Path(image["image"]).parent), str(files)]
        return {**lab_config(), **section, "cloudrepo:qemu": {**qemu, "imageDirs": dirs}}

    stack.write_config(config([good_pub]))
    t1 = time.monotonic()
    stack.up()
    figures["up_seconds"] = round(time.monotonic() - t1, 1)
    outputs = stack.outputs()
    guest = outputs["vms"][str(VM)]["cloudInit"]
    assert (guest["user"], guest["hostname"], guest["ssh"]) == (USER, HOSTNAME, f"cloudrepo ssh {SLICE} {VM}")
    assert set(guest["addresses"]) == {"eth0", "eth1"} and all(guest["addresses"].values()), guest
    assert guest["hostKey"].startswith("ssh-ed25519 ")
    pinned = tmp_path / "known_hosts"
    pinned.write_text("".join(known_hosts_line(ip, guest["hostKey"]) for ip in guest["addresses"].values()))
    address = guest["addresses"]["eth1"]  # the link's subnet; eth0's (VLAN 400) is tried too
    console = tmp_path / "console.log"  # not kept by the VM: ready() reports none

    figures["boot_to_ssh_seconds"], figures["boot_to_cloud_init_done_seconds"] = ready(
        good, pinned, address, console
    )
    addrs = ssh(good, pinned, address, "ip", "-4", "-o", "addr", "show")
    assert addrs.returncode == 0, addrs.stderr
    held = {(f[1], f[3].split("/")[0]) for f in map(str.split, addrs.stdout.splitlines()) if f[2] == "inet"}
    assert set(guest["addresses"].items()) <= held, (guest["addresses"], addrs.stdout)
    by_eth0 = ssh(good, pinned, guest["addresses"]["eth0"], "hostname")
    assert by_eth0.returncode == 0 and by_eth0.stdout.strip() == HOSTNAME, by_eth0.stderr
    probe = ssh(good, pinned, address, "cat", "/etc/cloudrepo-probe")
    assert probe.stdout.strip() == "from-user-data", probe
    marker = ssh(good, pinned, address, "touch", "first-boot-was-here")
    assert marker.returncode == 0, marker.stderr

    refused = ssh(tmp_path / "stranger", pinned, address, "hostname")
    assert refused.returncode == 255 and "Permission denied (publickey)" in refused.stderr, refused.stderr
    password = ssh(good, pinned, address, "hostname", extra=PASSWORDS_ONLY)
    assert password.returncode == 255 and "Permission denied (publickey)" in password.stderr, password.stderr
    stranger = tmp_path / "known_hosts.other"
    stranger.write_text(known_hosts_line(address, other_pub))
    unverified = ssh(good, stranger, address, "hostname")
    assert unverified.returncode == 255 and "Host key verification failed" in unverified.stderr, unverified

    # the keys change in the config: a change at preview, and up restarts the VM on a new seed, same disk
    pid = qemu_pid(testbed)
    overlay = host_paths("worker1").state / "vms" / str(VM) / "disk.qcow2"
    inode = overlay.stat().st_ino
    stack.write_config(config([other_pub]))
    changed = stack.cli.run("preview", "--non-interactive", "--expect-no-changes", check=False)
    text = failure(changed, PULUMI_CHANGES)
    assert f"{SLICE}-seed-{VM}" in text and f"{SLICE}-vm-{VM}" in text, text
    t2 = time.monotonic()
    stack.up()
    assert qemu_pid(testbed) != pid and overlay.stat().st_ino == inode
    assert stack.outputs()["vms"][str(VM)]["cloudInit"]["hostKey"] == guest["hostKey"]
    figures["reseeded_boot_to_ssh_seconds"], _ = ready(other, pinned, address, console)
    figures["reseed_up_to_ssh_seconds"] = round(time.monotonic() - t2, 1)
    kept = ssh(other, pinned, address, "ls", "first-boot-was-here")
    assert kept.returncode == 0, "the same disk: the first boot's file is there"
    dropped = ssh(good, pinned, address, "hostname")
    assert dropped.returncode == 255 and "Permission denied (publickey)" in dropped.stderr, dropped.stderr
    keys = ssh(other, pinned, address, "cat", f"/home/{USER}/.ssh/authorized_keys")
    assert keys.stdout.split("\n")[:-1] == [other_pub], keys.stdout

    out = lab_dir() / "figures" / "cloud-image-times.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print("cloud image times:", figures)
