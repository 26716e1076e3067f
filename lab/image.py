"""The testbed's tiny guest: a Debian cloud kernel and a busybox initramfs, built once and cached.

The guest loads the virtio-net modules (`virtio_net csum=0 gso=0`: the testbed's userspace OVS datapath
forwards a guest's partial TCP checksums unfinished, as the stand-in guests' `ethtool -K tx off` avoids),
configures every interface by DHCP (`udhcpc`; eth0's router is the default route, another interface's only
when there is none), quiets the kernel on the console and keeps a shell on the serial console (`ttyS0`),
which `lab.console` drives.

Built from Debian packages only: the kernel package is downloaded with `apt-get download` (not installed)
and unpacked with `dpkg-deb -x`; busybox comes from `busybox-static`. The result lives in
`$CLOUDREPO_CACHE/guest-<key>/` (default `~/.cache/cloudrepo`), `<key>` hashing the kernel package and
the guest's scripts, so a second build, or a fresh clone on the same machine, costs nothing. `guest()`
also places the two files at a fixed path in the testbed's directory (`.lab/guest/`), which
`Pulumi.dev.yaml` names.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lab.common import LabError, lab_dir, run

KERNEL_META = "linux-image-cloud-amd64"
BUSYBOX = Path("/bin/busybox")
MODULES = (
    "virtio_ring",
    "virtio",
    "virtio_pci_modern_dev",
    "virtio_pci_legacy_dev",
    "virtio_pci",
    "failover",
    "net_failover",
    "virtio_net",
    "virtio_blk",
)
"""The cloud kernel builds virtio as modules; loaded in this (dependency) order (`virtio_blk`: a disk
image is `/dev/vda`, which tests write and read raw with `dd`)."""

INIT = """#!/bin/sh
/bin/busybox mkdir -p /proc /sys /dev /sbin /usr/bin /usr/sbin /tmp /run
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
dmesg -n 1
for m in MODULES; do
  args=
  [ "$m" = virtio_net ] && args="csum=0 gso=0"
  insmod /lib/modules/$m.ko $args
done
hostname guest
ip link set lo up
for dev in /sys/class/net/eth*; do
  i=${dev##*/}
  ip link set "$i" up
  # every interface at once, never blocking the boot: a parked one has no DHCP server and retries forever
  udhcpc -f -i "$i" -s /etc/udhcpc.sh -t 3 -T 1 -A 1 >/dev/null 2>&1 &
done
while true; do
  setsid cttyhack sh -l </dev/ttyS0 >/dev/ttyS0 2>&1
done
"""

UDHCPC_SCRIPT = """#!/bin/sh
# Sets the address; eth0's router is the default route, another interface's only when there is none.
case "$1" in
  deconfig) ip -4 addr flush dev "$interface" ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip -4 addr add "$ip/${mask:-24}" dev "$interface"
    if [ -n "$router" ]; then
      set -- $router
      if [ "$interface" = eth0 ]; then
        ip -4 route replace default via "$1" dev "$interface"
      elif ! ip -4 route show default | grep -q .; then
        ip -4 route add default via "$1" dev "$interface"
      fi
    fi ;;
esac
exit 0
"""

PROFILE = "export PS1='# '\nstty -echo 2>/dev/null\n"


def cache_dir() -> Path:
    return Path(os.environ.get("CLOUDREPO_CACHE", Path.home() / ".cache" / "cloudrepo"))


def kernel_package() -> tuple[str, str]:
    """(package, version) of the kernel that `linux-image-cloud-amd64` depends on."""
    deps = run(["apt-cache", "depends", "--no-recommends", KERNEL_META], check=False).stdout
    m = re.search(r"Depends: (linux-image-[0-9][^\s]*-cloud-amd64)", deps)
    if not m:
        raise LabError(f"apt knows no {KERNEL_META}; run `apt-get update` (scripts/install-system)")
    pkg = m.group(1)
    version = run(["apt-cache", "show", "--no-all-versions", pkg]).stdout
    v = re.search(r"^Version: (\S+)", version, re.M)
    return pkg, v.group(1) if v else "?"


def image_key(pkg: str, version: str) -> str:
    recipe = "\n".join([pkg, version, *MODULES, INIT, UDHCPC_SCRIPT, PROFILE])
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def guest() -> dict[str, str]:
    """The guest's kernel and initrd in `.lab/guest/` (built on first use): {"kernel": P, "initrd": P}."""
    built = build()
    out = {}
    for key, path in built.items():
        src = Path(path)
        dst = lab_dir() / "guest" / src.name
        if (
            not dst.exists()
            or dst.stat().st_size != src.stat().st_size
            or dst.read_bytes() != src.read_bytes()
        ):
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(dst.name + ".tmp")
            shutil.copyfile(src, tmp)
            tmp.replace(dst)
        out[key] = str(dst)
    return out


def build() -> dict[str, str]:
    """The guest's kernel and initrd in the cache (built on first use); {"kernel": PATH, "initrd": PATH}."""
    pkg, version = kernel_package()
    out = cache_dir() / f"guest-{image_key(pkg, version)}"
    result = {"kernel": str(out / "vmlinuz"), "initrd": str(out / "initrd.gz")}
    if (out / ".complete").exists():
        return result
    if not BUSYBOX.is_file():
        raise LabError(f"{BUSYBOX} is missing: install busybox-static (scripts/install-system)")
    with cache_lock():
        if not (out / ".complete").exists():  # else another checkout built it while this one waited
            _build(pkg, version, out)
    return result


@contextmanager
def cache_lock() -> Iterator[None]:
    """One build at a time in the shared cache, the lock `scripts/install-pulumi` takes: two checkouts that
    build the guest at once would otherwise replace each other's finished directory under its readers."""
    cache_dir().mkdir(parents=True, exist_ok=True)
    with open(cache_dir() / "build.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _build(pkg: str, version: str, out: Path) -> None:
    """Build the guest of kernel package `pkg`=`version` into `out` (staged beside it, then renamed)."""
    with tempfile.TemporaryDirectory(prefix="guest-", dir=out.parent) as tmp:
        work = Path(tmp)
        got = subprocess.run(
            ["apt-get", "download", f"{pkg}={version}"], cwd=work, capture_output=True, text=True, check=False
        )
        if got.returncode != 0:
            raise LabError(f"apt-get download {pkg}={version} failed: {got.stderr.strip()}")
        debs = sorted(work.glob("*.deb"))
        if not debs:
            raise LabError(f"apt-get download {pkg} left no .deb in {work}")
        tree = work / "deb"
        run(["dpkg-deb", "-x", str(debs[0]), str(tree)], timeout=300)
        kernels = sorted((tree / "boot").glob("vmlinuz-*"))
        if not kernels:
            raise LabError(f"{debs[0].name} holds no boot/vmlinuz-*")
        root = work / "initramfs"
        for sub in ("bin", "etc", "lib/modules", "root"):
            (root / sub).mkdir(parents=True)
        shutil.copy2(BUSYBOX, root / "bin" / "busybox")
        os.symlink("busybox", root / "bin" / "sh")
        for name in MODULES:
            found = sorted(tree.glob(f"lib/modules/*/kernel/**/{name}.ko*"))
            if not found:
                raise LabError(f"{debs[0].name} has no module {name}")
            data = found[0].read_bytes()
            if found[0].suffix != ".ko":
                data = _decompress(found[0])
            (root / "lib" / "modules" / f"{name}.ko").write_bytes(data)
        _write(root / "init", INIT.replace("MODULES", " ".join(MODULES)), 0o755)
        _write(root / "etc" / "udhcpc.sh", UDHCPC_SCRIPT, 0o755)
        _write(root / "etc" / "profile", PROFILE, 0o644)
        stage = work / "out"
        stage.mkdir()
        shutil.copy2(kernels[0], stage / "vmlinuz")
        files = subprocess.run(["find", "."], cwd=root, capture_output=True, check=True, text=True).stdout
        cpio = subprocess.run(
            ["cpio", "-o", "-H", "newc", "--quiet", "--owner=0:0"],
            cwd=root,
            input=files.encode(),
            capture_output=True,
            check=True,
        ).stdout
        gz = subprocess.run(["gzip", "-9", "-n"], input=cpio, capture_output=True, check=True).stdout
        (stage / "initrd.gz").write_bytes(gz)
        (stage / "source.json").write_text(json.dumps({"kernelPackage": pkg, "version": version}) + "\n")
        (stage / ".complete").touch()
        shutil.rmtree(out, ignore_errors=True)
        stage.rename(out)


def _decompress(path: Path) -> bytes:
    tool = {".xz": ["xz", "-dc"], ".zst": ["zstd", "-dc"], ".gz": ["gzip", "-dc"]}.get(path.suffix)
    if tool is None:
        raise LabError(f"cannot unpack module {path}")
    return subprocess.run([*tool, str(path)], capture_output=True, check=True).stdout


def _write(path: Path, text: str, mode: int) -> None:
    path.write_text(text)
    path.chmod(mode)
