"""A real guest: a small Debian disk image with systemd, cloud-init and openssh-server, built once and cached.

Built from Debian's packages through the machine's own apt sources (`mmdebstrap`, no other registry): a
root file system put into an ext4 image (`mke2fs -d`, no mount) and converted to a compressed qcow2
(`qemu-img`). It
boots by direct kernel boot with the kernel and initrd taken from its own tree (no boot loader to install;
`root=/dev/vda`, the disk as the first virtio disk): `build()` returns the three paths and the kernel
command line.

What the image leaves to cloud-init: the user, its keys, the host name, the network (`net.ifnames=0`, so the
guest's eth0..ethN are the slice's, in `-device` order) and the SSH host keys (none is baked in: every VM
gets its own, from its seed). It reads only a NoCloud seed (`datasource_list`), so no boot waits for a
metadata server that is not there. `virtio_net.csum=0 virtio_net.gso=0`: the testbed's userspace OVS
datapath forwards a guest's partial TCP checksums unfinished (as for the tiny guest, `lab.image`).

The result lives in `$CLOUDREPO_CACHE/cloud-<key>/`, `<key>` hashing the recipe below, the apt sources and
the candidate versions of the packages named (`image_key`): a second build, or a fresh clone on the same
machine, costs nothing. The build holds the cache's `build.lock` (`lab.image.cache_lock`).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from lab.common import LabError, run
from lab.image import cache_dir, cache_lock

PACKAGES = (
    "systemd-sysv",
    "udev",
    "dbus",
    "linux-image-cloud-amd64",
    "initramfs-tools",
    "cloud-init",
    "openssh-server",
    "ifupdown",
    "isc-dhcp-client",
    "iproute2",
    "iputils-ping",
    "e2fsprogs",
    "sudo",
)
"""What the image holds beyond Debian's `minbase` (cloud-init renders the network for ifupdown; the
image has no `locales`, so cloud-init leaves the locale alone: `locale: false`)."""
DPKG_EXCLUDES = ("/usr/share/man/*", "/usr/share/doc/*", "/usr/share/info/*", "/usr/share/locale/*")
APPEND = "root=/dev/vda rw console=ttyS0 net.ifnames=0 virtio_net.csum=0 virtio_net.gso=0"
DISK_SIZE = "2G"
"""The root file system's size (the qcow2 holds only what is written)."""
CONVERT = ("qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2")
"""Compressed clusters: about a third of the size (what each worker is sent), read back by QEMU."""
SOURCE_FILES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))

CLOUD_CFG = """\
# cloudrepo: a NoCloud seed is the only data source; no password logins
datasource_list: [NoCloud, None]
ssh_pwauth: false
disable_root: true
locale: false
"""
FSTAB = "/dev/vda / ext4 rw,errors=remount-ro 0 1\n"


def apt_sources() -> list[Path]:
    """The machine's enabled apt source files (one-line `.list` and deb822 `.sources`), in apt's order."""
    found: list[Path] = []
    for src in SOURCE_FILES:
        if src.is_file() and src.read_text().strip():
            found.append(src)
        elif src.is_dir():
            found.extend(
                p for p in sorted(src.iterdir()) if p.suffix in (".list", ".sources") and p.is_file()
            )
    if not found:
        raise LabError("the machine has no apt sources (/etc/apt/sources.list{,.d})")
    return found


def codename() -> str:
    text = Path("/etc/os-release").read_text()
    m = re.search(r"^VERSION_CODENAME=\"?([a-z]+)\"?$", text, re.M)
    if not m:
        raise LabError("/etc/os-release names no VERSION_CODENAME: not a Debian release")
    return m.group(1)


def candidates(packages: tuple[str, ...]) -> dict[str, str]:
    """The version apt would install of each package (`apt-cache policy`), to key the cache with."""
    text = run(["apt-cache", "policy", *packages]).stdout
    found = dict(re.findall(r"^(\S+):\n\s+Installed: .*\n\s+Candidate: (\S+)", text, re.M))
    missing = [p for p in packages if found.get(p, "(none)") == "(none)"]
    if missing:
        raise LabError(f"apt knows no {', '.join(missing)}; run `apt-get update` (scripts/install-system)")
    return found


def image_key(suite: str, sources: list[Path], versions: dict[str, str]) -> str:
    recipe = [
        suite,
        *PACKAGES,
        *DPKG_EXCLUDES,
        APPEND,
        DISK_SIZE,
        *CONVERT,
        CLOUD_CFG,
        FSTAB,
        *(f"{p}\n{p.read_text()}" for p in sources),
        *(f"{k}={v}" for k, v in sorted(versions.items())),
    ]
    return hashlib.sha256("\n".join(recipe).encode()).hexdigest()[:16]


def build() -> dict[str, str]:
    """The cloud image in the cache, built on first use: {"image", "kernel", "initrd", "append"}."""
    suite, sources = codename(), apt_sources()
    out = cache_dir() / f"cloud-{image_key(suite, sources, candidates(PACKAGES))}"
    result = {
        "image": str(out / "disk.qcow2"),
        "kernel": str(out / "vmlinuz"),
        "initrd": str(out / "initrd.img"),
        "append": APPEND,
    }
    if (out / ".complete").exists():
        return result
    for tool in ("mmdebstrap", "mke2fs", "qemu-img"):
        if shutil.which(tool) is None:
            raise LabError(f"{tool} is missing: run scripts/install-system")
    with cache_lock():
        if not (out / ".complete").exists():  # else another checkout built it while this one waited
            _build(suite, sources, out)
    return result


def mmdebstrap_argv(suite: str, sources: list[Path], root: Path) -> list[str]:
    return [
        "mmdebstrap",
        "--quiet",
        "--mode=root",
        "--variant=minbase",
        "--format=directory",
        f"--include={','.join(PACKAGES)}",
        *(f"--dpkgopt=path-exclude={p}" for p in DPKG_EXCLUDES),
        "--dpkgopt=path-include=/usr/share/doc/*/copyright",
        suite,
        str(root),
        *(str(p) for p in sources),
    ]


def _build(suite: str, sources: list[Path], out: Path) -> None:
    """Build the image into `out` (staged beside it, then renamed)."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=".cloud-build-", dir=out.parent) as tmp:
        work = Path(tmp)
        root = work / "root"
        got = subprocess.run(
            mmdebstrap_argv(suite, sources, root), capture_output=True, text=True, timeout=3600, check=False
        )
        if got.returncode != 0:
            raise LabError(f"mmdebstrap failed ({got.returncode}): {got.stderr.strip()[-2000:]}")
        kernels = sorted((root / "boot").glob("vmlinuz-*"))
        initrds = sorted((root / "boot").glob("initrd.img-*"))
        if not kernels or not initrds:
            raise LabError(
                f"the image's /boot holds no vmlinuz-* and initrd.img-*: {sorted(root.glob('boot/*'))}"
            )
        stage = work / "out"
        stage.mkdir()
        shutil.copy2(kernels[-1], stage / "vmlinuz")
        shutil.copy2(initrds[-1], stage / "initrd.img")
        _customize(root)
        raw = work / "root.ext4"
        run(["mke2fs", "-q", "-t", "ext4", "-L", "root", "-d", str(root), str(raw), DISK_SIZE], timeout=1800)
        run([*CONVERT, str(raw), str(stage / "disk.qcow2")], timeout=1800)
        (stage / "disk.qcow2").chmod(0o444)
        source = {
            "suite": suite,
            "packages": candidates(PACKAGES),
            "kernel": kernels[-1].name,
            "append": APPEND,
            "buildSeconds": round(time.monotonic() - started, 1),
        }
        (stage / "source.json").write_text(json.dumps(source, indent=2, sort_keys=True) + "\n")
        (stage / ".complete").touch()
        shutil.rmtree(out, ignore_errors=True)
        stage.rename(out)


def _customize(root: Path) -> None:
    """What the packages leave for a real image to set: no baked host keys, no password, the fstab, the
    data source; a machine-id made on first boot."""
    for key in (root / "etc" / "ssh").glob("ssh_host_*"):
        key.unlink()
    run(["chroot", str(root), "passwd", "--lock", "root"])
    (root / "etc" / "fstab").write_text(FSTAB)
    (root / "etc" / "cloud" / "cloud.cfg.d" / "90-cloudrepo.cfg").write_text(CLOUD_CFG)
    (root / "etc" / "machine-id").write_text("")
    (root / "etc" / "hostname").write_text("localhost\n")
    shutil.rmtree(root / "var" / "lib" / "apt" / "lists", ignore_errors=True)
    (root / "var" / "lib" / "apt" / "lists" / "partial").mkdir(parents=True)
    for deb in (root / "var" / "cache" / "apt" / "archives").glob("*.deb"):
        deb.unlink()
