"""The seed volume made by the real `cloud-localds`: an ISO 9660 volume `cidata` holding exactly the three
documents (read back with `isoinfo`), 0600, nothing left beside it; a second write replaces it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from components.cloudinit import SeedSpec, seed_documents, seed_spec
from components.seed_image import VOLUME_ID, new_host_key, write_seed_image

PUB = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDQkfQcZOIW23im1l/44hbg2P3RXHJ0R80rdgXb+cwIN user@host"


def spec(hostname: str) -> SeedSpec:
    return seed_spec(
        {
            "vm": 1002,
            "hostname": hostname,
            "sshAuthorizedKeys": [PUB],
            "interfaces": {"eth0": "52:54:00:03:ea:00", "eth1": "52:54:00:03:ea:01"},
            "hostKey": new_host_key("vm1002").model_dump(),
        }
    )


def iso_file(image: Path, name: str) -> str:
    got = subprocess.run(
        ["isoinfo", "-R", "-i", str(image), "-x", f"/{name}"], capture_output=True, check=True, timeout=30
    )
    return got.stdout.decode()


def test_the_volume_is_cidata_with_exactly_the_documents(tmp_path: Path) -> None:
    out = tmp_path / "seeds" / "1002.img"
    docs = seed_documents(spec("vm1002"))
    assert write_seed_image(docs, out) == out
    header = subprocess.run(["isoinfo", "-d", "-i", str(out)], capture_output=True, text=True, check=True)
    assert f"Volume id: {VOLUME_ID}" in header.stdout
    assert iso_file(out, "user-data") == docs.user_data
    assert iso_file(out, "meta-data") == docs.meta_data
    assert iso_file(out, "network-config") == docs.network_config
    assert out.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in out.parent.iterdir()) == ["1002.img"], "the staging directory is gone"

    again = seed_documents(spec("other"))
    write_seed_image(again, out)
    assert iso_file(out, "meta-data") == again.meta_data != docs.meta_data
