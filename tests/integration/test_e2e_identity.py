"""A slice's identity on the real engine: a uid in the state, in the pool claim and in every owner mark.

- Two stacks (on two backends) with the same slice config: the second is refused at `up`, naming the stack
  that holds the name, and changes nothing on any host; the first's refresh finds all its resources, and
  the second's destroy removes nothing of the first.
- A first `up` that fails after claiming (a bridge only the host can refuse) is retried by the same stack:
  its uid comes from the state, not from the outputs (which a failed `up` does not write).
- When the claim is lost (removed by hand) a same-name stack can take the name, but not one object the
  first marked: its creates are refused and its destroy removes only its own.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.e2ekit import wall_time
from tests.integration.slicekit import SliceStack, failure, lab_config
from tests.labfixtures import Testbed, assert_scan_equal, scan
from vocabulary import naming

pytestmark = pytest.mark.integration

NAME = "twin"
VMS = [
    {"id": 7301, "worker": "worker1", "dataInterfaces": 1, "internet": True},
    {"id": 7302, "worker": "worker2", "dataInterfaces": 1},
]
LINKS = [["7301.eth1", "7302.eth1"]]
NOT_OBJECTS = ("lock", "lock.holder", "dnsmasq.log", "leases", "console.log", "console.log.1")
"""State files that record no object but what runs (the lock, its last holder, dnsmasq's log and leases, a
guest's console): a running guest changes them at any time."""


def twin_config(pool: int = 250, **extra: Any) -> dict[str, Any]:
    section = {"name": NAME, "vlanPool": {"start": pool}, "vms": VMS, "links": LINKS}
    return {**lab_config(), "cloudrepo:slice": section, **extra}


def state_files(testbed: Testbed) -> dict[str, str]:
    """Every file under every host's state root, with its text (pool claims, users registries, owner
    files, reservations, ...), but those that record no object."""
    found: dict[str, str] = {}
    for host, entry in sorted(testbed.inventory["hosts"].items()):
        root = Path(entry["stateDir"])
        for path in sorted(root.rglob("*")):
            if path.is_file() and path.name not in NOT_OBJECTS and not path.is_socket():
                found[f"{host}:{path.relative_to(root)}"] = path.read_text(errors="replace")
    return found


def claim_text(start: int, stack: str, uid: str) -> str:
    """A claim file of a 20-VLAN pool, as a stack of the tests' project with the default parking VLAN writes
    it."""
    return f"{start} {start + 19} {uid} cloudrepo/{stack}\nparking 4094\n"


def claims(testbed: Testbed) -> dict[str, str]:
    return {k: v for k, v in state_files(testbed).items() if k.startswith("network:pools/")}


def resources(stack: SliceStack) -> list[str]:
    doc = json.loads(stack.cli.export_state())
    return sorted(r["urn"] for r in doc["deployment"].get("resources") or [])


def uid_of(stack: SliceStack) -> str:
    doc = json.loads(stack.cli.export_state())
    found = [r for r in doc["deployment"]["resources"] if r["type"].endswith("SliceIdentity")]
    assert len(found) == 1, found
    return str(found[0]["outputs"]["uid"])


def failed_up(stack: SliceStack) -> str:
    return failure(stack.cli.run("up", "--yes", "--non-interactive", "--skip-preview", check=False))


def test_a_second_stack_with_the_same_slice_name_is_refused_and_changes_nothing(
    slice_stack: Callable[..., SliceStack],
    elsewhere: Callable[[str], SliceStack],
    testbed: Testbed,
) -> None:
    with wall_time("identity: same slice name, second stack refused"):
        first = slice_stack(
            "e2e-twin-a", 250, VMS, LINKS, extra={"cloudrepo:slice": twin_config()["cloudrepo:slice"]}
        )
        first.up()
        uid = uid_of(first)
        assert claims(testbed) == {f"network:pools/{NAME}@250": claim_text(250, "e2e-twin-a", uid)}
        owned = resources(first)
        hosts_before, files_before = scan(), state_files(testbed)
        marks = {
            port["external_ids"][naming.OWNER_KEY]
            for h in hosts_before["hosts"].values()
            for port in h["ovs"]["br-int"]["ports"].values()
            if port["external_ids"].get(naming.OWNER_KEY, "").startswith(NAME)
        }
        assert marks == {f"{NAME}+{uid}"}, marks

        # the same slice config on another backend (as two teachers who both start from the demo write)
        second = elsewhere("e2e-twin-b")
        second.write_config(twin_config())
        text = failed_up(second)
        print("\n[refused] " + next((ln.strip() for ln in text.splitlines() if "is held" in ln), text))
        assert f"slice '{NAME}' is held on this node by stack 'cloudrepo/e2e-twin-a' (uid {uid})" in text, (
            text
        )
        assert uid_of(second) != uid
        assert_scan_equal(hosts_before, scan())
        assert state_files(testbed) == files_before

        # the first slice is whole: its refresh finds every resource, and nothing is to change
        first.refresh()
        assert resources(first) == owned
        first.preview("--expect-no-changes")

        # the second's destroy removes nothing of the first's
        second.destroy()
        assert_scan_equal(hosts_before, scan())
        assert state_files(testbed) == files_before


def test_a_first_up_that_failed_after_claiming_is_retried_as_the_same_owner(
    slice_stack: Callable[..., SliceStack], testbed: Testbed
) -> None:
    with wall_time("identity: failed first up, retried"):
        stack = slice_stack("e2e-retry", 270, VMS, LINKS)
        section = {"vlanPool": {"start": 270}, "vms": VMS, "links": LINKS}
        # a bridge the workers do not have: the claim is made, every TAP then fails on its host
        stack.write_config({**lab_config(), "cloudrepo:slice": section, "cloudrepo:bridge": "br-none"})
        text = failed_up(stack)
        assert "no OVS bridge 'br-none'" in text, text
        uid = uid_of(stack)
        assert claims(testbed) == {"network:pools/e2e-retry@270": claim_text(270, "e2e-retry", uid)}
        assert stack.outputs() == {}  # a failed up writes no outputs: the uid is in the state alone

        stack.write_config({**lab_config(), "cloudrepo:slice": section})
        stack.up()
        assert uid_of(stack) == uid
        assert claims(testbed) == {"network:pools/e2e-retry@270": claim_text(270, "e2e-retry", uid)}
        stack.preview("--expect-no-changes")
        stack.destroy()
        assert claims(testbed) == {}


def test_a_lost_claim_lets_a_same_name_stack_take_the_name_but_no_object(
    slice_stack: Callable[..., SliceStack],
    elsewhere: Callable[[str], SliceStack],
    testbed: Testbed,
) -> None:
    with wall_time("identity: lost claim, destroy never removes another uid's objects"):
        first = slice_stack(
            "e2e-lost-a", 290, VMS, LINKS, extra={"cloudrepo:slice": twin_config(290)["cloudrepo:slice"]}
        )
        first.up()
        uid = uid_of(first)
        claim = f"/var/lib/cloudrepo/pools/{NAME}@290"
        testbed.run("network", f"rm {claim}")  # an operator's mistake
        hosts_before, files_before = scan(), state_files(testbed)

        second = elsewhere("e2e-lost-b")
        second.write_config(twin_config(290))
        text = failed_up(second)
        print("\n[refused] " + next((ln.strip() for ln in text.splitlines() if "belongs to" in ln), text))
        assert f"but belongs to slice '{NAME}' (uid {uid})" in text, text
        theirs = uid_of(second)
        second.destroy()

        # every object of the first is as it was; the second left nothing (its claim went with its destroy)
        assert_scan_equal(hosts_before, scan())
        assert state_files(testbed) == files_before
        assert theirs not in json.dumps(state_files(testbed))

        # the first takes its claim back with its next up, and its destroy leaves nothing of it
        first.refresh()
        first.up()
        assert claims(testbed) == {f"network:pools/{NAME}@290": claim_text(290, "e2e-lost-a", uid)}
        first.preview("--expect-no-changes")
        first.destroy()
        assert not any(uid in v or f"{NAME}+" in k for k, v in state_files(testbed).items())
