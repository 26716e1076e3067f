"""The launched VMs of a slice as plain data: the boot files to copy and one QEMU spec per VM.

`launch_plan` is pure: per worker, each boot file once (content-addressed), and per VM its `QemuVmSpec`
(with exactly the VM's `qemuNetArgs`), the TAPs it waits for, the copies it boots from and, with cloud-init,
its seed's `CloudSeedSpec` (whose hash the `QemuVmSpec` carries).
`components.vm_resources` instantiates that plan under the slice component.
"""

from __future__ import annotations

from dataclasses import dataclass

from components.bootfiles import BootFile
from components.cloudinit import seed_documents, seed_spec
from components.model import NAMESPACE, CloudInit
from components.outputs import qemu_net_args
from components.plan import SlicePlan
from vocabulary.specs import BootFileRef, CloudSeedSpec, QemuVmSpec, seed_hash


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
    seed: CloudSeedSpec | None = None
    """Its NoCloud seed (a `CloudSeed` named `seed_name`, which the VM waits for)."""

    @property
    def seed_name(self) -> str:
        return f"seed-{self.spec.vm}"

    @property
    def claim_name(self) -> str:
        """Its `WorkerClaim` (`components.resources.claim_resource`), when its worker declares a capacity."""
        return f"claim-{self.spec.vm}"


def _ref(f: BootFile | None) -> BootFileRef | None:
    return None if f is None else BootFileRef(path=f.remote, sha256=f.sha256)


def seed_spec_of(plan: SlicePlan, vm: int, ci: CloudInit) -> CloudSeedSpec:
    """The `CloudSeed` of a VM from its cloud-init config and its interfaces (MACs; DHCP on all but the
    parked ones): the documents of `components.cloudinit` and their hash."""
    config = plan.config
    ifaces = plan.by_vm(vm)
    docs = seed_documents(
        seed_spec(
            {
                "vm": vm,
                "hostname": ci.hostname,
                "user": ci.user,
                "sshAuthorizedKeys": list(ci.ssh_authorized_keys),
                "interfaces": {ip.iface: ip.mac for ip in ifaces},
                "parked": [ip.iface for ip in ifaces if ip.parked],
                "extra": None if ci.user_data is None else dict(ci.user_data),
            },
            f"{NAMESPACE}:slice.vms[{vm}].launch.cloudInit",
        )
    )
    return CloudSeedSpec(
        slice=config.slice_name,
        host=config.workers[next(v.worker for v in config.vms if v.id == vm)],
        bridge=config.bridge,
        vm=vm,
        meta_data=docs.meta_data,
        user_data=docs.user_data,
        network_config=docs.network_config,
        sha256=seed_hash(docs.meta_data, docs.user_data, docs.network_config),
    )


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
        seed = None if launch.cloud_init is None else seed_spec_of(plan, vm.id, launch.cloud_init)
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
            seed=None if seed is None else seed.sha256,
        )
        taps = tuple(f"tap-{ip.vm}-{ip.iface}" for ip in ifaces)
        vms.append(VmLaunch(f"vm-{vm.id}", spec, taps, tuple(dict.fromkeys(mine)), seed))
    return list(copies.values()), vms
