"""CloudSeed on the testbed (the provider alone, no engine): on worker1 the seed volume is a `cidata` ISO
holding exactly our documents, user-data with the guest's host key appended (its private half made there,
read back as YAML equal to the key files); the files are 0600 in a 0700 directory; only the public half is
in the outputs. A new seed replaces the old one and keeps the host key; another slice is refused; the
delete removes what it made."""

from __future__ import annotations

import json

import pytest
import yaml

from components.cloudinit import parsed, seed_documents, seed_spec
from providers.pipeline import HostProvider
from tests.functional import kit
from tests.functional.kit import outs
from tests.labfixtures import Testbed
from vocabulary.errors import OwnershipConflict
from vocabulary.naming import host_key_path, seed_path, vm_dir
from vocabulary.specs import CloudSeedSpec, Endpoint, seed_hash

pytestmark = pytest.mark.integration

VM = 9502
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGfFAQWnbMwM0xRNDcl1aJuK4nl7LVSNUX4lKsRy/wRs user@x"


def provider(testbed: Testbed) -> HostProvider:
    return kit.provider(testbed, "CloudSeed")


def spec(host: Endpoint, hostname: str, slice_: str = "fseed") -> CloudSeedSpec:
    docs = seed_documents(
        seed_spec(
            {
                "vm": VM,
                "hostname": hostname,
                "sshAuthorizedKeys": [KEY],
                "interfaces": {"eth0": "52:54:00:25:1e:00"},
            }
        )
    )
    return CloudSeedSpec(
        slice=slice_,
        host=host,
        vm=VM,
        meta_data=docs.meta_data,
        user_data=docs.user_data,
        network_config=docs.network_config,
        sha256=seed_hash(docs.meta_data, docs.user_data, docs.network_config),
    )


def iso_file(lab: Testbed, image: str, name: str) -> str:
    status, out = lab.run("worker1", f"isoinfo -R -i {image} -x /{name}")[:2]
    assert status == 0, out
    return str(out)


def test_the_seed_is_made_on_the_worker_with_its_host_key(lab: Testbed) -> None:
    host = Endpoint(name="worker1", address="127.0.0.1", port=lab.port("worker1"))
    seeds = provider(lab)
    first = spec(host, "alpha")
    made = seeds.create(first.inputs())
    try:
        got = outs(made)
        image = seed_path(VM, first.sha256)
        public = lab.run("worker1", f"cat {host_key_path(VM)}.pub")[1].strip()
        private = lab.run("worker1", f"cat {host_key_path(VM)}")[1]
        assert got["observed"]["hostKey"] == public and public.startswith("ssh-ed25519 ")
        assert got["observed"]["seed"] == image and got["drift"] == []
        assert "PRIVATE KEY" not in json.dumps(got) and private.strip() not in json.dumps(got)

        header = lab.run("worker1", f"isoinfo -d -i {image}")[1]
        assert "Volume id: cidata" in header
        assert iso_file(lab, image, "meta-data") == first.meta_data
        assert iso_file(lab, image, "network-config") == first.network_config
        user_data = iso_file(lab, image, "user-data")
        assert user_data.startswith(first.user_data)
        config = yaml.safe_load(user_data)
        assert config["ssh_keys"] == {"ed25519_private": private, "ed25519_public": public}
        assert {k: v for k, v in config.items() if k != "ssh_keys"} == parsed(first.user_data)

        modes = lab.run("worker1", f"stat -c '%a %n' {vm_dir(VM)} {vm_dir(VM)}/*")[1].split("\n")
        assert sorted(m for m in modes if m) == sorted(
            [f"700 {vm_dir(VM)}"]
            + [f"600 {vm_dir(VM)}/{n}" for n in ("hostkey", "hostkey.pub", "owner", image.rsplit("/", 1)[1])]
        )

        # a new seed: a new volume, the old one gone, the same host key
        second = spec(host, "beta")
        updated = outs(seeds.update(made.id, got, second.inputs()))
        assert updated["observed"]["hostKey"] == public
        listing = lab.run("worker1", f"ls {vm_dir(VM)}")[1].split()
        assert seed_path(VM, second.sha256).rsplit("/", 1)[1] in listing
        assert image.rsplit("/", 1)[1] not in listing
        assert "beta" in iso_file(lab, seed_path(VM, second.sha256), "meta-data")

        # in place: nothing to do; another slice's directory: refused
        again = outs(seeds.update(made.id, updated, second.inputs()))
        assert again["observed"]["hostKey"] == public
        with pytest.raises(OwnershipConflict):
            seeds.create(spec(host, "beta", slice_="fother").inputs())
    finally:
        seeds.delete(made.id, outs(made))
    assert lab.run("worker1", f"test -e {vm_dir(VM)}", check=False)[0] != 0, "the VM's directory is gone"
