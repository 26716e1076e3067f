"""The shell bodies unit tests cannot run (they need root, iptables, network namespaces), run for real on the
testbed's network node over SSH: iptables rules added and removed, a port moved into a namespace, and
ip_forward saved and restored.  Each test ends with the host's scan equal to its baseline."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from providers import bodies
from providers.kinds import internal_port
from providers.kinds import nat_rule as nr
from tests.labfixtures import Testbed, assert_scan_equal, scan
from transport import ssh
from transport.script import Step, sh
from vocabulary.errors import StepFailed
from vocabulary.specs import Endpoint

pytestmark = pytest.mark.integration

HOST = "network"
SCRATCH = "/var/lib/cloudrepo/ftest-bodies"
MARK = ["-m", "comment", "--comment", "cloudrepo:ftest-bodies"]


@pytest.fixture
def node(testbed: Testbed) -> Iterator[Endpoint]:
    """The network node, the SSH layer configured as the engine configures it; back to its scan after."""
    ssh.configure(testbed.ssh_config())
    ssh.close_all()
    baseline = scan(HOST)
    yield Endpoint(name=HOST, address="127.0.0.1", port=testbed.port(HOST))
    testbed.run(HOST, f"rm -rf {SCRATCH}")
    ssh.close_all()
    assert_scan_equal(baseline, scan(HOST))


def run(node: Endpoint, *steps: Step) -> Any:
    return ssh.run_script(node, list(steps))


def chain(testbed: Testbed, table: str, name: str) -> list[str]:
    """The chain's rules as `iptables -S` prints them (without the policy line)."""
    out = testbed.run(HOST, f"iptables -w -t {table} -S {name}")[1]
    return [line for line in out.splitlines() if line.startswith("-A ")]


def test_iptables_rules_are_added_once_first_or_last_and_every_copy_removed(
    testbed: Testbed, node: Endpoint
) -> None:
    first = ["-i", "ftest0", *MARK, "-j", "DROP"]
    last = ["-o", "ftest0", *MARK, "-j", "DROP"]
    filler = ["-i", "ftest1", *MARK, "-j", "ACCEPT"]
    try:
        run(node, bodies.add_rule("filler", "filter", "FORWARD", filler))
        for _ in range(2):
            run(
                node,
                bodies.add_rule("first", "filter", "FORWARD", first, first=True),
                bodies.add_rule("last", "filter", "FORWARD", last),
            )
        ours = [r for r in chain(testbed, "filter", "FORWARD") if "ftest-bodies" in r]
        assert ours == [
            '-A FORWARD -i ftest0 -m comment --comment "cloudrepo:ftest-bodies" -j DROP',
            '-A FORWARD -i ftest1 -m comment --comment "cloudrepo:ftest-bodies" -j ACCEPT',
            '-A FORWARD -o ftest0 -m comment --comment "cloudrepo:ftest-bodies" -j DROP',
        ]
        assert chain(testbed, "filter", "FORWARD")[0] == ours[0], "not inserted first"

        masq = ["-s", "10.250.0.0/24", "-o", "ens3", *MARK, "-j", "MASQUERADE"]
        for _ in range(3):  # copies a crash between check and add could leave
            testbed.run(HOST, "iptables -w -t nat -A POSTROUTING " + " ".join(masq))
        run(node, bodies.remove_rule("unmasquerade", "nat", "POSTROUTING", masq))
        assert not [r for r in chain(testbed, "nat", "POSTROUTING") if "ftest-bodies" in r]
        run(node, bodies.remove_rule("unmasquerade", "nat", "POSTROUTING", masq))  # none left: fine
    finally:
        for rule in (first, last, filler):
            run(node, bodies.remove_rule("cleanup", "filter", "FORWARD", rule))


def test_a_port_moves_into_its_namespace_or_is_removed(testbed: Testbed, node: Endpoint) -> None:
    add = ["ovs-vsctl", "--may-exist", "add-port", "br-int", "ftestmv0", "tag=3999", "--", "set",
           "interface", "ftestmv0", "type=internal"]  # fmt: skip
    try:
        run(node, Step("add", add), Step("netns", ["ip", "netns", "add", "ns-ftest-mv"]))
        run(node, sh("move", internal_port._MOVE, "ftestmv0", "ns-ftest-mv"))
        links = testbed.run(HOST, "ip -n ns-ftest-mv -j link show")[1]
        assert "ftestmv0" in [link["ifname"] for link in json.loads(links)]
        gone = testbed.run(HOST, "ip link show ftestmv0", check=False)
        assert gone[0] == 1 and 'Device "ftestmv0" does not exist' in gone[2], (
            f"still in the root namespace: {gone}"
        )

        # into a namespace that does not exist: retried for 3s, then the port is removed, the step fails
        run(node, Step("add again", [*add[:4], "ftestmv1", "tag=3999", "--", "set", "interface", "ftestmv1",
                                     "type=internal"]))  # fmt: skip
        with pytest.raises(StepFailed, match="could not move ftestmv1 into ns-ftest-none; port removed"):
            run(node, sh("move", internal_port._MOVE, "ftestmv1", "ns-ftest-none"))
        removed = testbed.run(HOST, "ovs-vsctl port-to-br ftestmv1", check=False)
        assert removed[0] == 1 and "no port named ftestmv1" in removed[2], removed
    finally:
        testbed.run(HOST, "ip netns del ns-ftest-mv", check=False)
        testbed.run(HOST, "ovs-vsctl --if-exists del-port ftestmv0 -- --if-exists del-port ftestmv1")


def test_ip_forward_is_saved_once_and_restored_by_the_last_user(testbed: Testbed, node: Endpoint) -> None:
    record, shared_dir = f"{SCRATCH}/ip_forward.before", f"{SCRATCH}/shared"
    mine, other = f"{shared_dir}/nat-a/users", f"{shared_dir}/nat-b/users"

    def forward() -> str:
        return testbed.run(HOST, "cat /proc/sys/net/ipv4/ip_forward")[1].strip()

    assert forward() == "0", "the testbed's network node starts with forwarding off"
    testbed.run(HOST, f"mkdir -p {mine} {other}")
    try:
        for _ in range(2):  # the second time it is on: the record keeps the value found first
            run(node, sh("on", nr._FORWARD_ON, record))
            assert forward() == "1"
            assert testbed.run(HOST, f"cat {record}")[1].strip() == "0"

        testbed.run(HOST, f"touch {other}/slice-b")  # another NAT object still in use: stays on
        run(node, sh("restore", nr._FORWARD_RESTORE, record, shared_dir, mine))
        assert forward() == "1" and testbed.run(HOST, f"test -f {record}", check=False)[0] == 0

        testbed.run(HOST, f"rm {other}/slice-b")  # the last user left: back to the value found, record gone
        run(node, sh("restore", nr._FORWARD_RESTORE, record, shared_dir, mine))
        assert forward() == "0"
        assert (
            testbed.run(HOST, f"test -e {record}", check=False)[0] == 1
        )  # absent (an SSH failure is -1/255)
        run(node, sh("restore", nr._FORWARD_RESTORE, record, shared_dir, mine))  # nothing recorded: no-op
        assert forward() == "0"
    finally:
        testbed.run(HOST, "sysctl -qw net.ipv4.ip_forward=0")
