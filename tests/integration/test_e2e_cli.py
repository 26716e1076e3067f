"""The `cloudrepo` command end to end on the testbed: a slice built verb by verb equals the same slice
deployed from YAML; a team shares slices on an S3 backend (a real S3 server on loopback)."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.common import NETWORK_HOST
from lab.pulumi_cli import PulumiCLI
from tests.integration.clikit import Checkout, checkout, cloud_file
from tests.integration.e2ekit import wall_time
from tests.integration.slicekit import SliceStack, resource_counts, slice_section
from tests.labfixtures import held_host_lock, mask_uids, scan, scan_diff
from tests.s3kit import VERSITYGW, versitygw

pytestmark = pytest.mark.integration

NAME = "cli-twin"
POOL = 600
VMS: list[dict[str, Any]] = [
    {"id": 3101, "worker": "worker1", "dataInterfaces": 3, "internet": True},
    {"id": 3102, "worker": "worker2", "dataInterfaces": 2},
    {"id": 3103, "worker": "worker2", "dataInterfaces": 2},
    {"id": 3104, "worker": "worker1", "dataInterfaces": 2},
]
LINKS: list[Any] = [["3101.eth1", "3104.eth1"]]
TOPOLOGY = [{"preset": "ring", "vms": [3101, 3102, 3103]}]


def vm_args(vm: dict[str, Any]) -> list[str]:
    args = ["--id", str(vm["id"]), "--worker", vm["worker"], "--data-interfaces", str(vm["dataInterfaces"])]
    return args + (["--internet"] if vm.get("internet") else [])


def test_verb_by_verb_equals_yaml(
    engine: None, testbed: Any, slice_stack: Callable[..., SliceStack], tmp_path: Path
) -> None:
    with wall_time("cli: verb by verb vs YAML"):
        state = tmp_path / "state"
        op = checkout(tmp_path / "checkout", {"PULUMI_BACKEND_URL": f"file://{state}"})
        op.script = [str(Path(op.script[0]).parent / "cloudrepo")]  # the installed console script
        cloud = cloud_file(tmp_path, tmp_path / "cloud-state")
        try:
            op.ok("slice", "create", NAME, "--pool", str(POOL), "--cloud", str(cloud))
            assert "secure:" in op.stack_file(NAME).read_text(), "the SSH key was not encrypted again"
            for vm in VMS:
                op.ok("vm", "add", NAME, *vm_args(vm))
            op.ok("link", "add", NAME, *LINKS[0])
            op.ok("topology", "add", NAME, "ring", "3101", "3102", "3103")

            # refused edits: exit 1, the reason, nothing written
            before = op.stack_file(NAME).read_text()
            for args, reason in (
                (("link", "add", NAME, "3104.eth1", "3102.eth2"), "3104.eth1 is already in"),
                (("link", "add", NAME, "3104.eth2", "3104.eth1"), "self link"),
                (("link", "rm", NAME, "3101.eth2", "3102.eth1"), "no written link 3101.eth2 -- 3102.eth1"),
                (("vm", "add", NAME, "--id", "3105", "--worker", "worker9"), "unknown worker 'worker9'"),
                (
                    ("topology", "add", NAME, "mesh", "3102", "3103"),
                    "VM 3102 needs 1 free data interfaces, has 0",
                ),
            ):
                result = op.run(*args)
                assert result.returncode == 1, (args, result.stdout, result.stderr)
                assert reason in result.stderr, (args, result.stderr)
                assert op.stack_file(NAME).read_text() == before

            planned = resource_counts(op.ok("preview", NAME))
            assert set(planned) == {"to create"}, planned
            assert resource_counts(op.ok("deploy", NAME)) == {"created": planned["to create"]}
            cli_stack = PulumiCLI(project_dir=op.project, backend_dir=state, stack=NAME)
            by_verbs = cli_stack.outputs()
            scan_verbs = scan()
            shown = op.ok("show", NAME)
            print(shown)
            for vm in by_verbs["vms"].values():
                for spec in vm["interfaces"].values():
                    assert spec["tap"] in shown
            picture = tmp_path / "slice.svg"
            assert op.ok("diagram", NAME, "-o", str(picture)).strip() == str(picture)
            assert "VM 3104" in picture.read_text()
            op.ok("destroy", NAME, "--yes", "--rm")
            assert not op.stack_file(NAME).exists()
            assert NAME not in op.ok("list")
        finally:
            op.cleanup(NAME)

        section = slice_section(POOL, VMS, LINKS)
        section["cloudrepo:slice"]["topology"] = TOPOLOGY
        twin = slice_stack(NAME, POOL, VMS, LINKS, secret_key=True, extra=section)
        twin.up()
        assert twin.outputs() == by_verbs
        # whole scans, lists as sets: the engine creates the gateways in parallel, so their iptables
        # rules (one independent DROP pair per gateway) come in either order; each stack has its own uid
        assert scan_diff(mask_uids(scan_verbs), mask_uids(scan())) == []


def test_a_full_pool_refuses_the_next_link_and_writes_nothing(
    engine: None, testbed: Any, tmp_path: Path
) -> None:
    """The 21st `link add`, and a preset past the pool, answer "VLAN pool exhausted" with the count."""
    op = checkout(tmp_path / "checkout", {"PULUMI_BACKEND_URL": f"file://{tmp_path / 'state'}"})
    full = tmp_path / "full.yaml"
    vms = [
        {"id": 3401, "worker": "worker1", "dataInterfaces": 21},
        {"id": 3402, "worker": "worker2", "dataInterfaces": 21},
    ]
    vms += [{"id": 3410 + i, "worker": "worker1", "dataInterfaces": 6} for i in range(7)]
    links = [[f"3401.eth{i}", f"3402.eth{i}"] for i in range(1, 21)]
    full.write_text(yaml.safe_dump({"vlanPool": {"start": 720}, "vms": vms, "links": links}))
    try:
        op.ok(
            "slice",
            "create",
            "cli-full",
            "--cloud",
            str(cloud_file(tmp_path, tmp_path / "cs")),
            "--from",
            str(full),
        )
        before = op.stack_file("cli-full").read_text()
        result = op.run("link", "add", "cli-full", "3401.eth21", "3402.eth21")
        assert result.returncode == 1
        assert "VLAN pool exhausted: 21 links, but the pool 720..739 holds 20 VLANs" in result.stderr, (
            result.stderr
        )
        mesh = op.run("topology", "add", "cli-full", "mesh", *(str(3410 + i) for i in range(7)))
        assert mesh.returncode == 1
        assert (
            "cloudrepo:slice.topology[0] (mesh of 7 VMs): VLAN pool exhausted: it makes 21 links "
            "(cloudrepo:slice.links has 20), but the pool holds 20 VLANs"
        ) in mesh.stderr, mesh.stderr
        assert op.stack_file("cli-full").read_text() == before
    finally:
        op.cleanup("cli-full")


def test_from_refuses_a_bad_launch_and_writes_nothing(engine: None, testbed: Any, tmp_path: Path) -> None:
    """`slice create --from` checks the VMs' launches as `pulumi preview` does: a boot file outside
    `qemu.imageDirs` and an unknown launch key are named at their key paths; no stack file is written."""
    op = checkout(tmp_path / "checkout", {"PULUMI_BACKEND_URL": f"file://{tmp_path / 'state'}"})
    bad = tmp_path / "bad-launch.yaml"
    vms = [
        {"id": 3501, "worker": "worker1", "launch": {"kernel": "/etc/shadow"}},
        {"id": 3502, "worker": "worker2", "launch": {"kernel": "images/k", "memoryMB": 64}},
    ]
    bad.write_text(yaml.safe_dump({"vlanPool": {"start": 760}, "vms": vms, "links": []}))
    cloud = cloud_file(tmp_path, tmp_path / "cs")
    result = op.run("slice", "create", "cli-bad-launch", "--cloud", str(cloud), "--from", str(bad))
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        "cloudrepo:slice.vms[0].launch.kernel: '/etc/shadow' is outside cloudrepo:qemu.imageDirs"
    ) in result.stderr, result.stderr
    assert "cloudrepo:slice.vms[1].launch.memoryMB: unknown key 'memoryMB'; did you mean 'memoryMb'?" in (
        result.stderr
    ), result.stderr
    assert not op.stack_file("cli-bad-launch").exists()


def _wait_for(proc: Any, text: str, seen: list[str]) -> None:
    """Read the process's output until a line holds `text`; keep reading it in the background."""
    for line in proc.stdout:
        seen.append(line)
        if text in line:
            break
    threading.Thread(target=lambda: seen.extend(proc.stdout), daemon=True).start()


@pytest.mark.skipif(not VERSITYGW.exists(), reason="run `make setup` to build versitygw")
def test_team_shares_slices_on_an_s3_backend(engine: None, testbed: Any, tmp_path: Path) -> None:
    with wall_time("cli: team on S3"), versitygw(tmp_path) as s3:
        print(f"\n[versitygw] pid {s3.pid}, serving on 127.0.0.1:{s3.port} after {s3.started_in:.2f}s")
        alice = checkout(tmp_path / "alice", s3.env())
        bob = checkout(tmp_path / "bob", s3.env())
        cloud = cloud_file(tmp_path, tmp_path / "cloud-state")
        try:
            _two_slices_two_checkouts(alice, bob, cloud, tmp_path)
            _vlan_memory_and_the_lock(alice, bob, s3.env())
        finally:
            alice.cleanup("team-a")
            bob.cleanup("team-b")
        assert sorted(p.name for p in s3.data.rglob("team-a.json*")), "no state in the bucket"


def _two_slices_two_checkouts(alice: Checkout, bob: Checkout, cloud: Path, tmp_path: Path) -> None:
    alice.ok("slice", "create", "team-a", "--pool", "640", "--cloud", str(cloud))
    alice.ok("vm", "add", "team-a", "--id", "3201", "--worker", "worker1", "--data-interfaces", "2")
    alice.ok("vm", "add", "team-a", "--id", "3202", "--worker", "worker2", "--data-interfaces", "2")
    alice.ok("vm", "add", "team-a", "--id", "3203", "--worker", "worker2", "--data-interfaces", "1")
    alice.ok("link", "add", "team-a", "3201.eth1", "3202.eth1")
    alice.ok("link", "add", "team-a", "3201.eth2", "3202.eth2")
    alice.ok("deploy", "team-a")

    from_file = tmp_path / "team-b.yaml"
    from_file.write_text(
        yaml.safe_dump(
            {
                "vlanPool": {"start": 660},
                "vms": [
                    {"id": 3301, "worker": "worker1", "dataInterfaces": 1},
                    {"id": 3302, "worker": "worker2", "dataInterfaces": 1},
                ],
                "topology": [{"preset": "bus", "vms": [3301, 3302]}],
            }
        )
    )
    bob.ok("slice", "create", "team-b", "--cloud", str(cloud), "--from", str(from_file))
    bob.ok("deploy", "team-b")

    for who in (alice, bob):
        listing = who.ok("list")
        print(listing)
        rows = {line.split()[0]: line.split() for line in listing.splitlines()[1:]}
        assert rows["team-a"][1:3] == ["640..659", "2/20"] and rows["team-a"][-2:] == ["update", "succeeded"]
        assert rows["team-b"][1:3] == ["660..679", "1/20"] and rows["team-b"][-2:] == ["update", "succeeded"]


def _link_vlans(outputs: dict[str, Any]) -> dict[str, int]:
    return {" -- ".join(link["endpoints"]): link["vlan"] for link in outputs["links"]}


def _vlan_memory_and_the_lock(alice: Checkout, bob: Checkout, s3_env: dict[str, str]) -> None:
    # The VLAN memory on this backend: the first link goes, a new one comes; the second keeps VLAN 641 and
    # the new one takes the freed 640 (a fresh allocation would have moved the second link to 640).
    alice.ok("link", "rm", "team-a", "3201.eth1", "3202.eth1")
    alice.ok("link", "add", "team-a", "3201.eth1", "3203.eth1")
    # Bob works on Alice's slice from his checkout: the stack config file travels (as in git).
    shutil.copy(alice.stack_file("team-a"), bob.stack_file("team-a"))

    # Two deploys of one slice at once, from both checkouts: one runs, the backend's lock refuses the other.
    # The first is held at a barrier while the second runs: the locks of the hosts it changes. The new link
    # takes the freed VLAN 640, so no gateway is made: its changes are the two TAPs' moves on worker2
    # (3202.eth1 parked, 3203.eth1 onto VLAN 640), each run under worker2's lock, so it cannot finish before
    # the second has been answered. The network node's lock is held too (its locked changes wait as well).
    first_out: list[str] = []
    with held_host_lock(NETWORK_HOST), held_host_lock("worker2"):
        first = alice.popen("deploy", "team-a")
        _wait_for(first, "Updating (", first_out)
        second = bob.run("deploy", "team-a")
        assert first.poll() is None, "the first deploy ended at the barrier:\n" + "".join(first_out)
    assert first.wait(timeout=900) == 0, "".join(first_out)
    assert second.returncode == 1, second.stdout + second.stderr
    assert "slice 'team-a' is locked: another deploy or destroy of it is running" in second.stderr
    assert "nothing was applied by this one" in second.stderr
    print(second.stderr)

    stack = PulumiCLI(
        project_dir=bob.project, backend_dir=bob.project / "unused", stack="team-a", extra_env=s3_env
    )
    assert _link_vlans(stack.outputs()) == {"3201.eth2 -- 3202.eth2": 641, "3201.eth1 -- 3203.eth1": 640}
    stack.run("preview", "--expect-no-changes", "--non-interactive")  # nothing half-applied
