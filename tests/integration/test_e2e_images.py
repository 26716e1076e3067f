"""Named images through the real engine, two checkouts on one shared S3 backend (versitygw on loopback).

Alice adds a 16 MiB qcow2 disk as `tiny-disk` and deletes her file; Bob, from his own checkout, deploys a
slice whose VM boots the testbed's tiny guest by its kernel with `launch.image: tiny-disk` as `/dev/vda`.
The bytes come from the bucket: the worker's copy has the registry's sha256, the VM's overlay is on that
base, and the guest sees a 16 MiB disk. `image rm` while the slice is deployed is refused naming it; after
`destroy` it succeeds and the bucket no longer holds the bytes."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab import console as lab_console
from lab import image
from lab.common import host_paths, lab_dir
from lab.pulumi_cli import PulumiCLI
from lab.vms import console_of
from tests.integration.clikit import checkout, cloud_file
from tests.integration.e2ekit import wall_time
from tests.s3kit import VERSITYGW, versitygw

pytestmark = pytest.mark.integration

NAME = "img-b"
VM = 7901
IMAGE = "tiny-disk"


@pytest.mark.skipif(not VERSITYGW.exists(), reason="run `make setup` to build versitygw")
def test_an_image_added_by_one_checkout_boots_a_slice_of_another(
    engine: None, testbed: Any, tmp_path: Path
) -> None:
    guest = image.guest()
    with versitygw(tmp_path) as s3:
        alice = checkout(tmp_path / "alice", s3.env())
        bob = checkout(tmp_path / "bob", s3.env())
        cloud = cloud_file(tmp_path, tmp_path / "cloud-state")
        doc = yaml.safe_load(cloud.read_text())
        doc["config"]["cloudrepo:qemu"] = {"accel": "tcg", "imageDirs": [str(lab_dir() / "guest")]}
        cloud.write_text(yaml.safe_dump(doc, sort_keys=False))
        try:
            disk = tmp_path / "alice-disk.qcow2"
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"], check=True)
            sha = hashlib.sha256(disk.read_bytes()).hexdigest()
            said = alice.ok("image", "add", IMAGE, str(disk), "--description", "16 MiB blank")
            assert sha in said and "qcow2" in said, said
            disk.unlink()  # only the backend has it now
            (listed,) = json.loads(bob.ok("image", "list", "--json"))
            assert (listed["name"], listed["sha256"], listed["format"]) == (IMAGE, sha, "qcow2")
            assert (s3.data / "pulumi-state" / ".cloudrepo" / "images" / "blobs" / sha).is_file()

            section = {
                "vlanPool": {"start": 700},
                "vms": [
                    {
                        "id": VM,
                        "worker": "worker1",
                        "dataInterfaces": 1,
                        "launch": {
                            "image": IMAGE,
                            "kernel": guest["kernel"],
                            "initrd": guest["initrd"],
                            "append": "console=ttyS0 quiet",
                            "memoryMb": 128,
                        },
                    }
                ],
                "links": [],
            }
            from_file = tmp_path / "img-b.yaml"
            from_file.write_text(yaml.safe_dump(section))
            bob.ok("slice", "create", NAME, "--cloud", str(cloud), "--from", str(from_file))
            cached = bob.project / ".cloudrepo" / ".images" / sha
            bob.ok("preview", NAME)  # the engine hashes the copy's file: the bytes come from the bucket now
            assert hashlib.sha256(cached.read_bytes()).hexdigest() == sha
            assert cached.stat().st_mode & 0o777 == 0o600
            with wall_time("images: deploy a VM from a named image fetched from S3"):
                bob.ok("deploy", NAME)

            stack = PulumiCLI(
                project_dir=bob.project, backend_dir=bob.project / "unused", stack=NAME, extra_env=s3.env()
            )
            vms = stack.outputs()["vms"]
            assert vms[str(VM)]["image"] == {"name": IMAGE, "sha256": sha}
            assert hashlib.sha256(cached.read_bytes()).hexdigest() == sha
            state = host_paths("worker1").state
            on_worker = state / "images" / sha
            assert hashlib.sha256(on_worker.read_bytes()).hexdigest() == sha
            base = (state / "vms" / str(VM) / "disk.base").read_text()
            assert sha in base, base  # the VM's overlay is on the registry's bytes
            sock = console_of(vms, str(VM))
            lab_console.wait_ready(sock, timeout=180)
            sectors = lab_console.run(sock, ["cat", "/sys/block/vda/size"], timeout=60)
            assert sectors.returncode == 0 and sectors.stdout.strip() == str(16 * 2048), sectors.stdout

            refused = alice.run("image", "rm", IMAGE)
            assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr
            assert f"used by deployed slice(s): {NAME} (vm {VM})" in refused.stderr, refused.stderr
            assert IMAGE in alice.ok("image", "list")

            bob.ok("destroy", NAME, "--yes")
            assert alice.ok("image", "rm", IMAGE).strip() == f"image {IMAGE} removed"
            assert json.loads(bob.ok("image", "list", "--json")) == []
            assert not (s3.data / "pulumi-state" / ".cloudrepo" / "images" / "blobs" / sha).exists()
        finally:
            bob.cleanup(NAME)
