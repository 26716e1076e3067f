"""`cloudrepo check` picks its path per guest: a cloud-init guest (the real Debian cloud image) through
`cloudrepo exec`'s SSH path, the tiny testbed guest through its serial console, in one run, each row
saying which: a lease check and a ping from the cloud-init guest over SSH, a ping from the tiny guest
over its console.

Behind the `cloud_image` mark (`make test-long`, `--cloud-image`): a TCG boot of the image takes minutes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lab import cloud_image
from tests.integration.e2ekit import guest_launch, qemu_tcg
from tests.integration.slicekit import SliceStack
from tests.integration.test_e2e_check import set_checks
from tests.integration.test_e2e_cloud_image import keypair
from tests.labfixtures import Testbed

pytestmark = pytest.mark.cloud_image

SLICE = "e2e-check-cloud"
POOL = 560
CLOUD, TINY = 7801, 7802


def test_check_uses_ssh_for_cloud_init_guests_and_the_console_for_others(
    slice_stack: Callable[..., SliceStack], testbed: Testbed, tmp_path: Path
) -> None:
    image = cloud_image.build()
    key = tmp_path / "key"
    launch = {
        "image": image["image"],
        "kernel": image["kernel"],
        "initrd": image["initrd"],
        "append": image["append"],
        "memoryMb": 512,
        "cloudInit": {"user": "op", "sshAuthorizedKeys": [keypair(key)]},
    }
    vms = [
        {"id": CLOUD, "worker": "worker1", "dataInterfaces": 1, "launch": launch},
        {"id": TINY, "worker": "worker2", "dataInterfaces": 1, "launch": guest_launch()},
    ]
    qemu = qemu_tcg()["cloudrepo:qemu"]
    extra = {"cloudrepo:qemu": {**qemu, "imageDirs": [*qemu["imageDirs"], str(Path(image["image"]).parent)]}}
    stack = slice_stack(SLICE, POOL, vms, [[f"{CLOUD}.eth1", f"{TINY}.eth1"]], secret_key=True, extra=extra)
    checks: list[dict[str, Any]] = [
        {"vm": CLOUD, "lease": "eth1"},
        {"from": TINY, "to": CLOUD},
        {"from": CLOUD, "to": TINY},
    ]
    set_checks(stack, checks[:2])
    stack.up()
    project = stack.cli.project_dir

    def check(*flags: str) -> tuple[int, dict[str, Any]]:
        done = subprocess.run(
            [sys.executable, "-m", "cloudrepo", "--project", str(project), "check", SLICE, "--json",
             "-i", str(key), *flags],
            env=stack.cli.env(), cwd=project, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=1500, check=False,
        )  # fmt: skip
        assert "Traceback" not in done.stderr, done.stderr
        return done.returncode, json.loads(done.stdout)

    status, report = check("--wait", "900")  # until the image has booted
    assert status == 0 and report["ok"], report
    set_checks(stack, checks)
    status, report = check("--wait", "120")  # a slow SSH login on a busy host is tried again
    rows = {r["check"]: r for r in report["checks"]}
    shown = json.dumps(report, indent=2)
    assert [rows[f"checks[{i}]"]["via"] for i in range(3)] == ["ssh", "console", "ssh"], shown
    ip = stack.outputs()["vms"][str(CLOUD)]["interfaces"]["eth1"]["ip"]
    assert (rows["checks[0]"]["result"], rows["checks[0]"]["got"]) == ("PASS", ip), shown
    assert rows["checks[1]"]["result"] == "PASS", shown
    assert rows["checks[2]"]["result"] == "PASS", shown
    assert status == 0 and report["ok"] is True, shown
