"""`launch` per VM and `cloudrepo:qemu`: parsing, every problem at once, and the launch plan."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from components.allocation import allocate_vlans
from components.config import ConfigError, load_config
from components.outputs import qemu_net_args
from components.plan import build_plan
from components.vms import launch_plan
from providers.kinds.qemu_vm import qemu_argv
from tests.cfgkit import raw_config, slice_with, with_changes
from vocabulary.naming import IMAGES_DIR


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """Boot files in the project's `images/` (the default `qemu.imageDirs`)."""
    out = {}
    (tmp_path / "images").mkdir()
    for name, data in (("vmlinuz", b"kernel"), ("initrd.gz", b"initrd"), ("disk.qcow2", b"QFI\xfb rest")):
        (tmp_path / "images" / name).write_bytes(data)
        out[name] = tmp_path / "images" / name
    return out


def launched(launches: dict[int, dict[str, Any]], **changes: Any) -> dict[str, Any]:
    vms = [
        {"id": 1002, "worker": "worker1", "dataInterfaces": 2, "internet": True},
        {"id": 1003, "worker": "worker2", "dataInterfaces": 1},
        {"id": 1004, "worker": "worker1", "dataInterfaces": 0},
    ]
    for vm in vms:
        if vm["id"] in launches:
            vm["launch"] = launches[vm["id"]]
    return with_changes(slice=slice_with(vms=vms), **changes)


def problems(config: dict[str, Any], base: Path) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_config(raw_config(config), "dev", base)
    return err.value.problems


def test_kernel_boot_with_defaults_and_an_override(tmp_path: Path, files: dict[str, Path]) -> None:
    kernel = {"kernel": "images/vmlinuz", "initrd": "images/initrd.gz", "append": "console=ttyS0"}
    config = load_config(
        raw_config(launched({1002: kernel, 1003: {**kernel, "accel": "tcg", "cpus": 2, "memoryMb": 128}})),
        "dev",
        tmp_path,
    )
    assert sorted(config.launches) == [1002, 1003]
    a, b = config.launches[1002], config.launches[1003]
    assert (a.binary, a.accel, a.cpus, a.memory_mb) == ("qemu-system-x86_64", "kvm", 1, 256)
    assert (b.accel, b.cpus, b.memory_mb) == ("tcg", 2, 128)
    assert a.kernel is not None and a.kernel.sha256 == hashlib.sha256(b"kernel").hexdigest()
    assert a.kernel.remote == f"{IMAGES_DIR}/{a.kernel.sha256}"
    assert a.image is None and a.append == "console=ttyS0"
    assert [v.id for v in config.vms] == [1002, 1003, 1004]


def test_stack_level_qemu_settings(tmp_path: Path, files: dict[str, Path]) -> None:
    cfg = launched(
        {1002: {"image": str(files["disk.qcow2"])}}, qemu={"binary": "/opt/q/bin/qemu", "accel": "tcg"}
    )
    vm = load_config(raw_config(cfg), "dev", tmp_path).launches[1002]
    assert (vm.binary, vm.accel, vm.image_format) == ("/opt/q/bin/qemu", "tcg", "qcow2")


def test_every_problem_is_reported_at_once(tmp_path: Path, files: dict[str, Path]) -> None:
    cfg = launched(
        {
            1002: {"kernel": "images/vmlinuz", "image": "images/disk.qcow2", "accel": "xen", "cpus": 0},
            1003: {"kernel": "images/nope/vmlinuz", "memoryMb": 8, "colour": "red"},
            1004: {"image": "images/disk.qcow2", "append": "console=ttyS0"},
        },
        qemu={"binary": "qemu system", "accel": "hvf"},
        bridge="br;x",
    )
    assert problems(cfg, tmp_path) == [
        "cloudrepo:bridge: interface name 'br;x' must start with a letter or digit and contain only letters, "
        "digits, '_', '.' and '-'",
        "cloudrepo:qemu.accel: must be one of kvm, tcg, got 'hvf'",
        "cloudrepo:qemu.binary: must be a command name or an absolute path, without spaces or shell "
        "characters, got 'qemu system'",
        "cloudrepo:slice.vms[0].launch.cpus: input should be greater than or equal to 1, got 0",
        "cloudrepo:slice.vms[1].launch.memoryMb: input should be greater than or equal to 32, got 8",
        "cloudrepo:slice.vms[1].launch.colour: unknown key 'colour' (known: image, kernel, initrd, append, "
        "cpus, memoryMb, accel, cloudInit)",
        f"cloudrepo:slice.vms[1].launch.kernel: no such file 'images/nope/vmlinuz' (looked at "
        f"'{tmp_path / 'images/nope/vmlinuz'}')",
        "cloudrepo:slice.vms[2].launch.append: only with kernel (direct kernel boot)",
    ]


def test_file_and_choice_problems(tmp_path: Path, files: dict[str, Path]) -> None:
    cfg = launched(
        {
            1002: {"kernel": "images/vmlinuz", "image": "images/disk.qcow2", "accel": "xen"},
            1003: {"kernel": "images/nope/vmlinuz", "initrd": "images/initrd.gz"},
            1004: {"cpus": 2},
        }
    )
    assert problems(cfg, tmp_path) == [
        "cloudrepo:slice.vms[0].launch.accel: must be one of kvm, tcg, got 'xen'",
        f"cloudrepo:slice.vms[1].launch.kernel: no such file 'images/nope/vmlinuz' (looked at "
        f"'{tmp_path / 'images/nope/vmlinuz'}')",
        "cloudrepo:slice.vms[2].launch: give image, kernel (+ initrd, append), or both, got neither",
    ]


def test_an_image_booted_by_its_kernel(tmp_path: Path, files: dict[str, Path]) -> None:
    both = {"image": "images/disk.qcow2", "kernel": "images/vmlinuz", "initrd": "images/initrd.gz"}
    cfg = launched({1002: {**both, "append": "root=/dev/vda console=ttyS0", "accel": "tcg"}})
    config = load_config(raw_config(cfg), "dev", tmp_path)
    plan = build_plan(config, allocate_vlans(config.links, config.pool, {}))
    _, vms = launch_plan(plan)
    spec = vms[0].spec
    assert spec.image is not None and spec.kernel is not None and spec.initrd is not None
    argv = qemu_argv(spec, "/usr/bin/qemu-system-x86_64")
    assert argv[argv.index("-append") + 1] == "root=/dev/vda console=ttyS0"
    assert argv.index("-kernel") < argv.index("-drive") and "disk.qcow2" in argv[argv.index("-drive") + 1]


def test_no_launch_changes_nothing(tmp_path: Path) -> None:
    config = load_config(raw_config(launched({})), "dev", tmp_path)
    assert config.launches == {}
    plan = build_plan(config, allocate_vlans(config.links, config.pool, {}))
    assert launch_plan(plan) == ([], [])


def test_launch_plan_copies_once_per_worker(tmp_path: Path, files: dict[str, Path]) -> None:
    kernel = {"kernel": "images/vmlinuz", "initrd": "images/initrd.gz", "accel": "tcg"}
    config = load_config(raw_config(launched({1002: kernel, 1003: kernel, 1004: kernel})), "dev", tmp_path)
    plan = build_plan(config, allocate_vlans(config.links, config.pool, {}))
    copies, vms = launch_plan(plan)
    # two files on two workers: 1002 and 1004 share worker1's copies
    assert sorted((c.worker, c.file.local) for c in copies) == sorted(
        (w, str(files[f])) for w in ("worker1", "worker2") for f in ("vmlinuz", "initrd.gz")
    )
    by_vm = {v.spec.vm: v for v in vms}
    assert by_vm[1002].copies == by_vm[1004].copies
    assert by_vm[1002].taps == ("tap-1002-eth0", "tap-1002-eth1", "tap-1002-eth2")
    for vm in vms:
        net = qemu_net_args(plan.by_vm(vm.spec.vm))
        assert vm.spec.net_args == net
        argv = qemu_argv(vm.spec, "/usr/bin/qemu-system-x86_64")
        i = argv.index(net[0])
        assert argv[i : i + len(net)] == net, "the VM gets exactly its qemuNetArgs"
        assert argv[-3:] == ["-pidfile", f"/var/lib/cloudrepo/vms/{vm.spec.vm}/qemu.pid", "-daemonize"]
        assert vm.spec.host.name == config.vm(vm.spec.vm).worker
