"""`cloudrepo ssh` and `cloudrepo exec` into the real cloud image, as an operator runs them: a slice with two
launched VMs on different workers, deployed by the real engine from a config that gives them the Debian
cloud image and `cloudInit` (a user, a host name each, a key of this test); the engine makes their seeds
and host keys on the workers. The command (a process of its own, on the slice's backend) reaches them
with OpenSSH through the testbed's network node as ProxyJump (its host key verified against the hosts'
known_hosts, the hosts' key given as the secret `cloudrepo:sshPrivateKey`), each guest verified against
the slice's known_hosts written from the outputs' host keys.

`hostname` prints the configured host name, `ip -4 addr` shows every reserved address, a key not in the
config is refused (255), the command's exit status passes through (`sh -c 'exit 7'` -> 7), its words
arrive as they were, and `exec` returns both VMs' results (table and JSON).

Behind the `cloud_image` mark (`make test-long`, `--cloud-image`): two TCG guests boot in a few minutes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cloudrepo import guestssh
from lab import cloud_image
from tests.integration.e2ekit import qemu_tcg
from tests.integration.slicekit import SliceStack
from tests.integration.test_e2e_cloud_image import keypair
from tests.labfixtures import Testbed

pytestmark = pytest.mark.cloud_image

SLICE = "e2e-guest-ssh"
POOL = 380
HOSTNAMES = {7601: "alpha7601", 7602: "bravo7602"}
USER = "op"
DEADLINE = 900
"""Seconds both TCG guests may take from `up` to a working login (about a minute each when idle)."""


def test_ssh_and_exec_reach_two_guests_through_the_network_node(
    slice_stack: Callable[..., SliceStack], testbed: Testbed, tmp_path: Path
) -> None:
    image = cloud_image.build()
    good, stranger = tmp_path / "good", tmp_path / "stranger"
    good_pub = keypair(good)
    keypair(stranger)  # a key the config never names

    def launch(vm: int) -> dict[str, Any]:
        return {
            "image": image["image"],
            "kernel": image["kernel"],
            "initrd": image["initrd"],
            "append": image["append"],
            "memoryMb": 512,
            "cloudInit": {"hostname": HOSTNAMES[vm], "user": USER, "sshAuthorizedKeys": [good_pub]},
        }

    vms = [
        {"id": 7601, "worker": "worker1", "dataInterfaces": 1, "internet": True, "launch": launch(7601)},
        {"id": 7602, "worker": "worker2", "dataInterfaces": 1, "launch": launch(7602)},
    ]
    qemu = qemu_tcg()["cloudrepo:qemu"]
    extra = {"cloudrepo:qemu": {**qemu, "imageDirs": [*qemu["imageDirs"], str(Path(image["image"]).parent)]}}
    stack = slice_stack(SLICE, POOL, vms, [["7601.eth1", "7602.eth1"]], secret_key=True, extra=extra)
    stack.up()
    outputs = stack.outputs()
    project = stack.cli.project_dir

    def cloudrepo(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cloudrepo", "--project", str(project), *args],
            env=stack.cli.env(), cwd=project, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=timeout, check=False,
        )  # fmt: skip

    t0 = time.monotonic()
    both = cloudrepo("exec", SLICE, "-i", str(good), "--json", "--timeout", "60", "--", "hostname")
    while both.returncode != 0 and time.monotonic() - t0 < DEADLINE:
        time.sleep(3)
        both = cloudrepo("exec", SLICE, "-i", str(good), "--json", "--timeout", "60", "--", "hostname")
    assert both.returncode == 0, f"no login in {DEADLINE} s:\n{both.stdout}\n{both.stderr}"
    print(f"both guests answered {time.monotonic() - t0:.0f} s after up")
    results = json.loads(both.stdout)
    assert [(r["vm"], r["exit"], r["stdout"].strip()) for r in results] == [
        (7601, 0, "alpha7601"),
        (7602, 0, "bravo7602"),
    ], results

    # the pins: every address of both guests, from the outputs' host keys
    known = guestssh.slice_known_hosts(project, SLICE).read_text().splitlines()
    for vm in HOSTNAMES:
        guest = outputs["vms"][str(vm)]["cloudInit"]
        for address in guest["addresses"].values():
            assert f"{address} {' '.join(guest['hostKey'].split()[:2])}" in known, (known, guest)

    hostname = cloudrepo("ssh", SLICE, "7602", "-i", str(good), "--", "hostname")
    assert (hostname.returncode, hostname.stdout.strip()) == (0, "bravo7602"), hostname.stderr
    for vm in HOSTNAMES:
        addrs = cloudrepo("ssh", SLICE, str(vm), "-i", str(good), "--", "ip", "-4", "-o", "addr", "show")
        assert addrs.returncode == 0, addrs.stderr
        held = {
            (f[1], f[3].split("/")[0]) for f in map(str.split, addrs.stdout.splitlines()) if f[2] == "inet"
        }
        reserved = outputs["vms"][str(vm)]["cloudInit"]["addresses"]
        assert set(reserved.items()) <= held and len(reserved) == (2 if vm == 7601 else 1), (reserved, held)
    seven = cloudrepo("ssh", SLICE, "7601", "-i", str(good), "--", "sh", "-c", "exit 7")
    assert seven.returncode == 7, seven.stderr
    words = cloudrepo("ssh", SLICE, "7601", "-i", str(good), "--", "printf", "%s|", "a b", "$(id)", "--", "*")
    assert (words.returncode, words.stdout) == (0, "a b|$(id)|--|*|"), words.stderr
    refused = cloudrepo("ssh", SLICE, "7601", "-i", str(stranger), "--", "hostname")
    assert refused.returncode == guestssh.SSH_STATUS and "Permission denied (publickey)" in refused.stderr, (
        refused.stderr
    )

    probe = 'hostname; test "$(hostname)" = alpha7601'
    table = cloudrepo("exec", SLICE, "--vm", "7602", "--vm", "7601", "-i", str(good), "--", "sh", "-c", probe)
    rows = [line.split() for line in table.stdout.splitlines()]
    assert rows == [["vm", "exit", "output"], ["7601", "0", "alpha7601"], ["7602", "1", "bravo7602"]], table
    assert table.returncode == 1, table  # not every command exited 0
    assert not list(Path("/tmp").glob("cloudrepo-ssh-*")) or all(
        p.stat().st_mtime < t0 for p in Path("/tmp").glob("cloudrepo-ssh-*")
    ), "a run's private directory (the hosts' key) was left behind"
