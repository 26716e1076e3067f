"""Cloud-init seeds wired into launched VMs, on the real engine with the testbed's tiny guest (fast: no
cloud image). A VM boots a disk image by direct kernel boot with a NoCloud seed from `slice.cloudInit`
and its own `launch.cloudInit`: the seed is made on the worker (0600, the guest's host key beside it, its
private half in no output and nowhere in the state), attached read-only; the outputs give the user, host
name, addresses, public host key and ssh command. The same config again is no change; new keys are a
change at `preview` (the seed and the VM) and `up` restarts the VM on a new seed, on the same disk, with the
same host key; `destroy` leaves nothing of the VM's directory."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab import image
from lab.common import host_paths
from tests.integration.e2ekit import qemu_tcg, state
from tests.integration.slicekit import PULUMI_CHANGES, SliceStack, failure, lab_config, slice_section
from tests.labfixtures import Testbed

SLICE = "e2e-seed"
POOL = 380
VM = 7601


def keypair(path: Path) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)], check=True
    )
    return path.with_suffix(".pub").read_text().strip()


def qemu_pid(testbed: Testbed, vm: int) -> int:
    return int(testbed.run("worker1", f"cat /var/lib/cloudrepo/vms/{vm}/qemu.pid")[1])


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def test_a_seed_is_made_attached_and_changed_with_a_restart(
    slice_stack: Callable[..., SliceStack], testbed: Testbed, tmp_path: Path
) -> None:
    guest = image.guest()
    files = tmp_path / "images"
    files.mkdir()
    disk = files / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"], check=True)
    user_data = files / "user.yaml"
    user_data.write_text(
        "#cloud-config\nwrite_files:\n  - {path: /etc/motd, content: 'seeded by user-data'}\n"
    )
    first, second = keypair(tmp_path / "first"), keypair(tmp_path / "second")
    launch = {
        "image": str(disk),
        "kernel": guest["kernel"],
        "initrd": guest["initrd"],
        "append": "console=ttyS0 quiet",
        "memoryMb": 96,
        "cloudInit": {"hostname": "seeded"},
    }
    vms = [
        {"id": VM, "worker": "worker1", "dataInterfaces": 2, "launch": launch},
        {"id": VM + 1, "worker": "worker2", "dataInterfaces": 1},
    ]
    links = [[f"{VM}.eth1", f"{VM + 1}.eth1"]]
    stack = slice_stack(SLICE, POOL, vms, links)
    qemu = qemu_tcg()["cloudrepo:qemu"]

    def config(keys: list[str]) -> dict[str, Any]:
        section = slice_section(POOL, vms, links)
        section["cloudrepo:slice"]["cloudInit"] = {
            "user": "alice",
            "sshAuthorizedKeys": keys,
            "userData": str(user_data),
        }
        return {
            **lab_config(),
            **section,
            "cloudrepo:qemu": {**qemu, "imageDirs": [*qemu["imageDirs"], str(files)]},
        }

    stack.write_config(config([first]))
    stack.up()
    outputs = stack.outputs()
    guest_out = outputs["vms"][str(VM)]["cloudInit"]
    vm_dir = host_paths("worker1").state / "vms" / str(VM)
    public = (vm_dir / "hostkey.pub").read_text().strip()
    assert guest_out == {
        "user": "alice",
        "hostname": "seeded",
        "addresses": {"eth1": outputs["vms"][str(VM)]["interfaces"]["eth1"]["ip"]},  # eth0, eth2 parked
        "hostKey": public,
        "ssh": f"cloudrepo ssh {SLICE} {VM}",
    }
    assert "cloudInit" not in outputs["vms"][str(VM + 1)]
    seeds = sorted(vm_dir.glob("seed-*.img"))
    assert len(seeds) == 1 and seeds[0].stat().st_mode & 0o777 == 0o600
    assert (vm_dir / "hostkey").stat().st_mode & 0o777 == 0o600
    private = (vm_dir / "hostkey").read_text()
    pid = qemu_pid(testbed, VM)
    argv = cmdline(pid)
    assert (
        f"file={seeds[0]},if=virtio,format=raw,readonly=on".replace(
            str(host_paths("worker1").state), "/var/lib/cloudrepo"
        )
        in argv
    )
    exported = json.dumps(state(stack))
    assert private.strip() not in exported and "PRIVATE KEY" not in exported
    assert "seeded by user-data" not in exported, "the documents are secrets in the state"
    assert "seeded by user-data" not in " ".join(argv)

    same = stack.cli.run("preview", "--non-interactive", "--expect-no-changes", check=False)
    assert same.returncode == 0, same.stdout + same.stderr

    # new keys: a change at preview (seed and VM), a restart on a new seed on the same disk at up
    stack.write_config(config([second]))
    changed = stack.cli.run("preview", "--non-interactive", "--expect-no-changes", "--diff", check=False)
    text = failure(changed, PULUMI_CHANGES)
    assert f"{SLICE}-seed-{VM}" in text and f"{SLICE}-vm-{VM}" in text, text
    overlay = (vm_dir / "disk.qcow2").stat().st_ino
    stack.up()
    new_pid = qemu_pid(testbed, VM)
    new_seeds = sorted(vm_dir.glob("seed-*.img"))
    assert new_pid != pid and len(new_seeds) == 1 and new_seeds[0] != seeds[0]
    assert any(
        a.startswith(f"file=/var/lib/cloudrepo/vms/{VM}/{new_seeds[0].name},") for a in cmdline(new_pid)
    )
    assert (vm_dir / "disk.qcow2").stat().st_ino == overlay, "the same disk"
    assert stack.outputs()["vms"][str(VM)]["cloudInit"]["hostKey"] == public, "the same host key"
    again = stack.cli.run("preview", "--non-interactive", "--expect-no-changes", check=False)
    assert again.returncode == 0, again.stdout + again.stderr

    stack.destroy()
    assert not vm_dir.exists()
