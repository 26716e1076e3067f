"""Launched VMs against hostile configs, on the real engine and testbed.

- `qemu.binary: eval` with a kernel command line that is shell (`console=ttyS0; id > FILE #`): `up` is
  refused before QEMU starts, naming the binary; FILE never appears. With the real binary the same command
  line reaches QEMU as one argument, and FILE still never appears.
- Boot files outside `qemu.imageDirs` (`~`, `/proc`, `..`, a symlink out, the testbed's SSH key, a FIFO)
  fail `pulumi preview`, each named with its key path, and no host is touched.
- A deployed VM's files have the right owners: the VM directory 0700, its overlay and console socket 0600,
  the image cache 0700 with files 0600 and nothing left in `incoming/`, the state root 0711; nothing our
  scripts made is readable by others but the DHCP reservations, which dnsmasq (as `nobody`) still reads:
  the guest takes its reserved lease.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab import image, slicecheck
from lab.common import host_paths, lab_dir
from tests.integration.e2ekit import guest_launch, qemu_tcg, wall_time
from tests.integration.slicekit import SliceStack, failure
from tests.labfixtures import Testbed, assert_scan_equal, scan

SLICE = "e2e-launchsec"
POOL = 420
KERNEL_VM, DISK_VM = 7601, 7602
HOSTILE = "console=ttyS0 quiet; id > /var/lib/cloudrepo/PWNED # $(id) `id` 'q\" x"
"""A kernel command line that is shell: run by `sh` after `eval`, it writes the worker's root id."""


def pwned() -> bool:
    return any((host_paths(w).state / "PWNED").exists() for w in ("worker1", "worker2"))


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def failed(result: Any) -> str:
    return failure(result)


def test_launch_guards(slice_stack: Callable[..., SliceStack], testbed: Testbed, tmp_path: Path) -> None:
    with wall_time("launch guards"):
        boot_files_outside_image_dirs_fail_preview(slice_stack, tmp_path)
        builtin_binary_is_refused_and_append_stays_one_argument(slice_stack, testbed, tmp_path)


def boot_files_outside_image_dirs_fail_preview(
    slice_stack: Callable[..., SliceStack], tmp_path: Path
) -> None:
    disks = tmp_path / "bootfiles"
    disks.mkdir()
    (disks / "out").symlink_to(lab_dir() / "id_ed25519")
    os.mkfifo(disks / "fifo")
    attacks = {
        "kernel": "~/.ssh/id_ed25519",
        "image": "/proc/self/environ",
        "initrd": f"{disks}/../../../../../../etc/passwd",
    }
    vms: list[dict[str, Any]] = [
        {"id": 7611, "worker": "worker1", "launch": {"kernel": attacks["kernel"]}},
        {"id": 7612, "worker": "worker1", "launch": {"image": attacks["image"]}},
        {"id": 7613, "worker": "worker1", "launch": {**guest_launch(), "initrd": attacks["initrd"]}},
        {"id": 7614, "worker": "worker2", "launch": {"kernel": str(lab_dir() / "id_ed25519")}},
        {"id": 7615, "worker": "worker2", "launch": {"kernel": str(disks / "out")}},
        {"id": 7616, "worker": "worker2", "launch": {"image": str(disks / "fifo")}},
    ]
    qemu = qemu_tcg()["cloudrepo:qemu"]
    extra = {"cloudrepo:qemu": {**qemu, "imageDirs": [*qemu["imageDirs"], str(disks)]}}
    stack = slice_stack("e2e-bootpaths", POOL + 20, vms, [], extra=extra)
    before = scan()
    text = failed(stack.cli.run("preview", "--non-interactive", check=False))
    expected = [
        "cloudrepo:slice.vms[0].launch.kernel: '~' is not expanded",
        "cloudrepo:slice.vms[1].launch.image: '/proc/self/environ' is outside cloudrepo:qemu.imageDirs",
        f"cloudrepo:slice.vms[2].launch.initrd: '{attacks['initrd']}' is outside",
        f"cloudrepo:slice.vms[3].launch.kernel: '{lab_dir() / 'id_ed25519'}' is outside",
        f"cloudrepo:slice.vms[4].launch.kernel: '{disks / 'out'}' is outside cloudrepo:qemu.imageDirs",
        f"cloudrepo:slice.vms[5].launch.image: '{disks / 'fifo'}' is not a regular file",
    ]
    for line in expected:
        assert line in text, f"{line!r} missing from:\n{text}"
    assert "Traceback" not in text, text
    failed(stack.cli.run("up", "--yes", "--non-interactive", "--skip-preview", check=False))
    assert_scan_equal(before, scan())


def builtin_binary_is_refused_and_append_stays_one_argument(
    slice_stack: Callable[..., SliceStack], testbed: Testbed, tmp_path: Path
) -> None:
    disk = tmp_path / "disks" / "base.qcow2"
    disk.parent.mkdir()
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"], check=True)
    vms = [
        {
            "id": KERNEL_VM,
            "worker": "worker1",
            "dataInterfaces": 1,
            "launch": {**guest_launch(), "append": HOSTILE},
        },
        {
            "id": DISK_VM,
            "worker": "worker1",
            "dataInterfaces": 1,
            "launch": {"image": str(disk), "memoryMb": 64},
        },
    ]
    qemu = {
        **qemu_tcg()["cloudrepo:qemu"],
        "imageDirs": [*qemu_tcg()["cloudrepo:qemu"]["imageDirs"], str(disk.parent)],
    }
    links = [[f"{KERNEL_VM}.eth1", f"{DISK_VM}.eth1"]]
    stack = slice_stack(SLICE, POOL, vms, links, extra={"cloudrepo:qemu": {**qemu, "binary": "eval"}})
    assert not pwned()

    # the attack: refused at up before QEMU starts, naming the binary; the command line never ran
    text = failed(stack.cli.run("up", "--yes", "--non-interactive", "--skip-preview", check=False))
    assert "cloudrepo:qemu.binary 'eval' is not an executable file on the worker" in text, text
    assert "a shell built-in, function or alias" in text and "nothing was started" in text, text
    assert not pwned(), "the kernel command line ran as shell on the worker"
    vm_dirs = host_paths("worker1").state / "vms"
    assert not vm_dirs.exists() or not any(vm_dirs.iterdir()), sorted(vm_dirs.rglob("*"))

    # the operator's binary: QEMU runs by its path, the hostile command line is one argument of it
    config = stack.config_file.read_text()
    stack.config_file.write_text(config.replace('"binary": "eval"', '"binary": "qemu-system-x86_64"'))
    stack.up()
    assert not pwned()
    outputs = stack.outputs()
    pid = int((vm_dirs / str(KERNEL_VM) / "qemu.pid").read_text())
    argv = cmdline(pid)
    path = testbed.run("worker1", "command -v qemu-system-x86_64")[1].strip()
    assert argv[0] == path and path.startswith("/")
    assert argv[argv.index("-append") + 1] == HOSTILE
    assert argv.count("-pidfile") == 1 and argv[-1] == "-daemonize"

    files_have_the_right_owners(outputs, disk)


def files_have_the_right_owners(outputs: dict[str, Any], disk: Path) -> None:
    worker = host_paths("worker1").state
    network = host_paths("network").state
    assert mode(worker) == 0o711
    for vm in (KERNEL_VM, DISK_VM):
        d = worker / "vms" / str(vm)
        assert mode(d) == 0o700, oct(mode(d))
        sock = d / "console.sock"
        assert stat.S_ISSOCK(os.lstat(sock).st_mode) and mode(sock) == 0o600, oct(mode(sock))
        assert mode(d / "console.log") == 0o600, oct(mode(d / "console.log"))
        for name in ("qemu.pid", "owner"):
            assert mode(d / name) & 0o077 == 0, (name, oct(mode(d / name)))
        assert os.lstat(sock).st_uid == 0  # the SSH user of the testbed is root
    assert mode(worker / "vms" / str(DISK_VM) / "disk.qcow2") == 0o600
    images = worker / "images"
    assert mode(worker / "vms") == 0o700
    assert mode(images) == 0o700 and mode(images / "incoming") == 0o700
    assert not any((images / "incoming").iterdir())
    guest = image.guest()
    for f in [*map(Path, guest.values()), disk]:
        stored = images / hashlib.sha256(f.read_bytes()).hexdigest()
        assert mode(stored) == 0o600, (f, oct(mode(stored)))

    # nothing the scripts made is readable by others, but the reservations dnsmasq reads as `nobody`
    vlan = outputs["links"][0]["vlan"]
    dhcp = network / "dhcp" / f"vlan{vlan}"
    [reservations] = (dhcp / "hosts.d").iterdir()  # named by the slice's owner mark, `<slice>+<uid>`
    assert reservations.name.startswith(f"{SLICE}+"), reservations
    assert mode(reservations) == 0o644 and mode(dhcp / "hosts.d") == 0o755
    assert mode(dhcp / "hosts") == 0o644  # their concatenation, the `--dhcp-hostsfile` dnsmasq re-reads
    assert mode(network) == 0o711 and mode(network / "dhcp") == 0o711 and mode(dhcp) == 0o711
    dnsmasq_own = ("leases", "dnsmasq.log", "dnsmasq.pid")
    for root in (worker, network):
        for path in root.rglob("*"):
            rel = path.relative_to(root).parts
            if path.is_symlink() or rel == ("dhcp",) or (rel[0] == "dhcp" and len(rel) == 2):
                continue
            if rel[0] == "dhcp" and rel[2] in ("hosts.d", "hosts"):
                assert mode(path) & 0o022 == 0, f"{path} is {oct(mode(path))}"
                continue
            if rel[0] == "dhcp" and rel[2] in dnsmasq_own:
                # dnsmasq's own: it sets umask 022 itself (pid file, leases 0644; its log 0660, its group's)
                assert mode(path) & 0o002 == 0, f"{path} is {oct(mode(path))}"
                continue
            assert mode(path) & 0o077 == 0, f"{path} is {oct(mode(path))}"

    # dnsmasq runs unprivileged (it reads the reservations as that user) and still serves them: the guest
    # takes its reserved address on the link
    status = Path(f"/proc/{int((dhcp / 'dnsmasq.pid').read_text())}/status").read_text()
    uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
    assert uid != "0", "dnsmasq kept root"
    slicecheck.use_launched(outputs)
    ip = outputs["vms"][str(KERNEL_VM)]["interfaces"]["eth1"]["ip"]
    got = slicecheck.launched_leases({(str(KERNEL_VM), "eth1"): ip})
    assert got[(str(KERNEL_VM), "eth1")][0] == ip, got
