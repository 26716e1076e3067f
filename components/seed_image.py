"""A NoCloud seed on disk: the `cidata` volume made by `cloud-localds` (cloud-image-utils) from
`components.cloudinit`'s documents, and a new guest host key made by `cryptography`.

The volume is ISO 9660 with the volume id `cidata` (what cloud-init's NoCloud looks for), written by
`genisoimage` through `cloud-localds`; nothing here writes a file system by hand. The files it holds carry
the guest's private host key, so the image is made 0600 and its staging directory is removed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from components.cloudinit import HostKey, SeedDocuments

TOOL = "cloud-localds"
VOLUME_ID = "cidata"


class SeedImageError(Exception):
    """The seed volume could not be made (the tool is missing or failed)."""


def new_host_key(comment: str) -> HostKey:
    """A fresh ed25519 host key for a guest (OpenSSH formats)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return HostKey(private=private, public=f"{public.decode()} {comment}")


def write_seed_image(docs: SeedDocuments, out: Path) -> Path:
    """Write the `cidata` volume of `docs` to `out` (replaced atomically, mode 0600)."""
    tool = shutil.which(TOOL)
    if tool is None:
        raise SeedImageError(f"{TOOL} is missing: install cloud-image-utils (scripts/install-system)")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".seed-", dir=out.parent) as tmp:
        work = Path(tmp)
        files = {
            "user-data": docs.user_data,
            "meta-data": docs.meta_data,
            "network-config": docs.network_config,
        }
        for name, text in files.items():
            fd = os.open(work / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
        image = work / "seed.img"
        argv = [
            tool,
            "--filesystem=iso9660",
            "--disk-format=raw",
            f"--network-config={work / 'network-config'}",
            str(image),
            str(work / "user-data"),
            str(work / "meta-data"),
        ]
        got = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        if got.returncode != 0 or not image.is_file():
            raise SeedImageError(f"{TOOL} failed ({got.returncode}): {got.stderr.strip()[-500:]}")
        image.chmod(0o600)
        image.replace(out)
    return out
