"""Slices deployed before slices had uids, upgraded on the real engine.

Two stacks on two backends deploy the same slice config with the code before uids (which let the second
adopt every object of the first). The first `up` with this code of the first stack updates every resource
in place (no replacement; its VM keeps running): it adopts the claim under the lock and marks every object
with its uid. The second stack's `up` is then refused naming the first, and its `destroy` (of a state from
before uids) removes nothing of the first. The first's destroy leaves nothing.

The code before uids is the program of commit `OLD_COMMIT`, taken from this repository's history with
`git archive` (`CLOUDREPO_OLD_CODE=DIR` names a checkout of it instead); skipped only when neither is there
(a clone without that history).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lab import PROJECT_ROOT
from tests.integration.e2ekit import guest_launch, qemu_tcg, wall_time
from tests.integration.slicekit import SliceStack, lab_config
from tests.integration.test_e2e_identity import claim_text, claims, failed_up, resources, state_files, uid_of
from tests.integration.upgradekit import ops, program_at, use_code
from tests.labfixtures import Testbed, assert_scan_equal, scan
from vocabulary import naming

OLD_COMMIT = "9e5fe74658c5246fde60c1ba7bed32d3a866e67d"
"""The last commit before slices had uids (and before parking VLANs were claimed and boot files confined)."""
pytestmark = [pytest.mark.integration, pytest.mark.long]  # an upgrade from an older release: make test-long

NAME = "heir"
OLD_PROGRAM = ("__main__.py", "providers", "components")
"""The program's parts at `OLD_COMMIT`."""


@pytest.fixture(scope="module")
def old_code(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The program of `OLD_COMMIT`: `$CLOUDREPO_OLD_CODE`, or extracted from the repository's history."""
    given = os.environ.get("CLOUDREPO_OLD_CODE")
    if given:
        return Path(given)
    return program_at(OLD_COMMIT, OLD_PROGRAM, tmp_path_factory.mktemp("old-code"))


def config(old: bool = False) -> dict[str, Any]:
    """The slice; `old`: as the code before `qemu.imageDirs` takes it (its guest from anywhere)."""
    vms = [
        {"id": 7501, "worker": "worker1", "dataInterfaces": 1, "internet": True, "launch": guest_launch()},
        {"id": 7502, "worker": "worker2", "dataInterfaces": 1},
    ]
    section = {"name": NAME, "vlanPool": {"start": 310}, "vms": vms, "links": [["7501.eth1", "7502.eth1"]]}
    qemu = {"cloudrepo:qemu": {"accel": "tcg"}} if old else qemu_tcg()
    return {**lab_config(), **qemu, "cloudrepo:slice": section}


def marks(doc: dict[str, Any]) -> set[str]:
    return {
        port["external_ids"][naming.OWNER_KEY]
        for h in doc["hosts"].values()
        for port in h["ovs"]["br-int"]["ports"].values()
        if naming.mark_slice(port["external_ids"].get(naming.OWNER_KEY, "")) == NAME
    }


def test_an_old_slice_is_adopted_once_by_the_stack_that_holds_its_claim(
    slice_stack: Callable[..., SliceStack],
    elsewhere: Callable[[str], SliceStack],
    testbed: Testbed,
    old_code: Path,
) -> None:
    with wall_time("upgrade: slices deployed before uids"):
        first = slice_stack("e2e-heir-a", 310, [], [], extra=config(old=True))
        second = elsewhere("e2e-heir-b")
        second.write_config(config(old=True))
        for stack in (first, second):
            use_code(stack, old_code)
            stack.up()  # the second silently adopts the first's objects: what uids end
        assert marks(scan()) == {NAME}
        pid = testbed.run("worker1", "cat /var/lib/cloudrepo/vms/7501/qemu.pid")[1].strip()

        # the first stack's first up with this code: updates in place, nothing replaced
        use_code(first, PROJECT_ROOT)
        first.write_config(config())  # the same slice; its guest's directory named in qemu.imageDirs
        steps = ops(first)
        assert not {op for op in steps.values() if op not in ("same", "update", "create")}, steps
        assert [n for n, op in steps.items() if op == "create"] == ["slice-identity"], steps
        first.up()
        uid = uid_of(first)
        assert claims(testbed) == {f"network:pools/{NAME}@310": claim_text(310, "e2e-heir-a", uid)}
        assert marks(scan()) == {f"{NAME}+{uid}"}
        files = state_files(testbed)
        assert files["worker1:vms/7501/owner"] == f"{NAME}+{uid}\n"
        assert f"network:shared/gw_vlan400/users/{NAME}+{uid}" in files
        assert f"network:shared/gw_vlan400/users/{NAME}" not in files
        assert not any(k.endswith(f"hosts.d/{NAME}") for k in files), sorted(files)
        assert testbed.run("worker1", "cat /var/lib/cloudrepo/vms/7501/qemu.pid")[1].strip() == pid
        first.preview("--expect-no-changes")
        owned = resources(first)

        # the second stack, now with this code too, is refused; its destroy removes nothing of the first
        use_code(second, PROJECT_ROOT)
        second.write_config(config())
        hosts_before, files_before = scan(), state_files(testbed)
        text = failed_up(second)
        assert f"slice '{NAME}' is held on this node by stack 'cloudrepo/e2e-heir-a' (uid {uid})" in text, (
            text
        )
        second.destroy()
        assert_scan_equal(hosts_before, scan())
        assert state_files(testbed) == files_before

        first.refresh()
        assert resources(first) == owned
        first.preview("--expect-no-changes")
        first.destroy()
        assert marks(scan()) == set()
        assert not any(NAME in k or NAME in v for k, v in state_files(testbed).items())
