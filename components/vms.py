"""The launched VMs of a slice as plain data: the boot files to copy and one QEMU spec per VM.

`launch_plan` is pure: per worker, each boot file once (content-addressed), and per VM its `QemuVmSpec`
(with exactly the VM's `qemuNetArgs`), the TAPs it waits for and the copies it boots from.
`components.vm_resources` instantiates that plan under the slice component.
"""

from __future__ import annotations

from dataclasses import dataclass

from components.bootfiles import BootFile
from components.outputs import qemu_net_args
from components.plan import SlicePlan
from vocabulary.specs import BootFileRef, QemuVmSpec


@dataclass(frozen=True)
class ImageCopy:
    """One boot file on one worker."""

    worker: str
    file: BootFile

    @property
    def name(self) -> str:
        return f"image-{self.worker}-{self.file.sha256[:12]}"


@dataclass(frozen=True)
class VmLaunch:
    name: str
    spec: QemuVmSpec
    taps: tuple[str, ...]
    """Resource names (suffixes) of the VM's TAPs."""
    copies: tuple[str, ...]
    """Resource names (suffixes) of the copies of its boot files."""


def _ref(f: BootFile | None) -> BootFileRef | None:
    return None if f is None else BootFileRef(path=f.remote, sha256=f.sha256)


def launch_plan(plan: SlicePlan) -> tuple[list[ImageCopy], list[VmLaunch]]:
    """Every copy (once per worker and file) and every VM launch of the slice, in config order."""
    config = plan.config
    launches = config.launches
    copies: dict[tuple[str, str], ImageCopy] = {}
    vms: list[VmLaunch] = []
    for vm in config.vms:
        launch = launches.get(vm.id)
        if launch is None:
            continue
        ifaces = plan.by_vm(vm.id)
        mine = []
        for f in launch.files:
            copy = copies.setdefault((vm.worker, f.sha256), ImageCopy(vm.worker, f))
            mine.append(copy.name)
        ep = config.workers[vm.worker]
        spec = QemuVmSpec(
            slice=config.slice_name,
            host=ep,
            bridge=config.bridge,
            vm=vm.id,
            binary=launch.binary,
            accel=launch.accel,
            cpus=launch.cpus,
            memory_mb=launch.memory_mb,
            kernel=_ref(launch.kernel),
            initrd=_ref(launch.initrd),
            append=launch.append,
            image=_ref(launch.image),
            image_format=launch.image_format,
            net_args=qemu_net_args(ifaces),
        )
        taps = tuple(f"tap-{ip.vm}-{ip.iface}" for ip in ifaces)
        vms.append(VmLaunch(f"vm-{vm.id}", spec, taps, tuple(dict.fromkeys(mine))))
    return list(copies.values()), vms
