# ruff: noqa: E501  (the exact messages are long strings; splitting them would hide what is asserted)
"""The stack-config model: every bad input reported with its exact message, all problems in one error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulumi
import pytest

from components.config import load_config
from components.inputs import raw_stack_config
from tests.cfgkit import BASE, ROOT, guest_project, raw_config, raw_from_file, slice_with, with_changes
from vocabulary.errors import ConfigError

HEAD = "cloudrepo: {n} problem{s} in the stack config (nothing was changed):"


def problems(config: dict[str, Any], stack: str = "dev") -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(raw_config(config), stack)
    err = info.value
    n = len(err.problems)
    assert str(err).splitlines() == [
        HEAD.format(n=n, s="s" if n != 1 else ""),
        *(f"  - {p}" for p in err.problems),
    ]
    return err.problems


def vms(*entries: dict[str, Any]) -> list[dict[str, Any]]:
    return list(entries)


# ---------------------------------------------------------------------------------------------------------
# valid configs


def test_spec_example_loads() -> None:
    cfg = load_config(raw_config(BASE), "dev")
    assert cfg.slice_name == "demo"
    assert cfg.network_node.model_dump() == {"name": "network", "address": "10.0.10.3", "port": 22}
    assert cfg.uplink == "ens3"
    assert cfg.workers["worker2"].model_dump() == {"name": "worker2", "address": "10.0.10.2", "port": 22}
    assert cfg.bridge == "br-int"
    assert cfg.parking_vlan == 4094
    assert cfg.dns_servers == ("8.8.8.8",)
    assert (cfg.pool.start, cfg.pool.end) == (120, 139)
    assert [v.id for v in cfg.vms] == [1002, 1003]
    assert [link.key for link in cfg.links] == [("1002.eth1", "1003.eth1")]
    assert cfg.ssh.sudo is False
    assert cfg.ssh.private_key is None


def test_dev_stack_file_loads(tmp_path: Path) -> None:
    cfg = load_config(raw_from_file(ROOT / "Pulumi.dev.yaml"), "dev", guest_project(tmp_path))
    assert sorted(cfg.launches) == [1002, 1003, 1004]
    assert cfg.network_node.port == 2200
    assert {n: (w.address, w.port) for n, w in cfg.workers.items()} == {
        "worker1": ("127.0.0.1", 2201),
        "worker2": ("127.0.0.1", 2202),
    }
    assert cfg.ssh.user == "root" and cfg.ssh.sudo is True
    assert cfg.ssh.private_key_path == ".lab/id_ed25519"
    assert cfg.ssh.known_hosts_path == ".lab/known_hosts"
    assert [link.key for link in cfg.links] == [("1002.eth1", "1003.eth1"), ("1002.eth2", "1004.eth1")]
    # every feature: an internet VM, links across workers, an unlinked data interface (1004.eth2)
    assert [v.id for v in cfg.internet_vms] == [1002]
    workers = {v.id: v.worker for v in cfg.vms}
    assert all(workers[link.a.vm] != workers[link.b.vm] for link in cfg.links)
    linked = {str(e) for link in cfg.links for e in (link.a, link.b)}
    assert "1004.eth2" not in linked and cfg.vm(1004).data_interfaces == 2


def test_defaults_slice_name_from_stack_and_secret_key() -> None:
    config = with_changes(
        slice=slice_with(name=None),
        ssh={"user": "ubuntu", "knownHostsPath": "kh"},
        sshPrivateKey={"secure": "x"},
    )
    del config["cloudrepo:slice"]["name"]
    cfg = load_config(raw_config(config), "tenant-7")
    assert cfg.slice_name == "tenant-7"
    assert cfg.ssh.private_key is not None
    assert "BEGIN" not in repr(cfg.ssh)  # the secret never shows in a repr


def test_link_forms_and_canonical_order() -> None:
    config = with_changes(
        slice=slice_with(
            vms=[
                {"id": 1002, "worker": "worker1", "dataInterfaces": 2},
                {"id": 1003, "worker": "worker2", "dataInterfaces": 2},
            ],
            links=[["1003.eth1", "1002.eth1"], {"a": "1002.eth2", "b": "1003.eth2", "vlan": 125}],
        )
    )
    cfg = load_config(raw_config(config), "dev")
    assert [(link.key, link.pinned) for link in cfg.links] == [
        (("1002.eth1", "1003.eth1"), None),
        (("1002.eth2", "1003.eth2"), 125),
    ]


def test_other_namespaces_are_not_ours() -> None:
    config = with_changes(**{})
    config["aws:region"] = "eu-west-1"
    config["cloudrepoX:foo"] = "1"
    assert load_config(raw_config(config), "dev") == load_config(raw_config(with_changes(**{})), "dev")


# ---------------------------------------------------------------------------------------------------------
# one bad input at a time: the exact message


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        pytest.param(
            {"slice": slice_with(vms=vms({"id": 1002, "worker": "worker3"}), links=[])},
            [
                "cloudrepo:slice.vms[0].worker: VM 1002: unknown worker 'worker3'; did you mean 'worker2'? "
                "(cloudrepo:workers has: worker1, worker2)"
            ],
            id="unknown-worker",
        ),
        pytest.param(
            {
                "slice": slice_with(
                    vms=vms({"id": 1002, "worker": "worker1"}, {"id": 1002, "worker": "worker2"}), links=[]
                )
            },
            ["cloudrepo:slice.vms[1].id: duplicate VM id 1002 (also cloudrepo:slice.vms[0])"],
            id="duplicate-vm",
        ),
        pytest.param(
            {
                "slice": slice_with(
                    vms=vms(
                        {"id": 0, "worker": "worker1"},
                        {"id": -3, "worker": "worker1"},
                        {"id": "1005", "worker": "worker1"},
                        {"id": 1.5, "worker": "worker1"},
                        {"id": True, "worker": "worker1"},
                        {"id": 65536, "worker": "worker1"},
                    ),
                    links=[],
                )
            },
            [
                "cloudrepo:slice.vms[0].id: must be a positive integer up to 65535 (the MAC holds 16 bits of it), "
                "got 0",
                "cloudrepo:slice.vms[1].id: must be a positive integer up to 65535 (the MAC holds 16 bits of it), "
                "got -3",
                "cloudrepo:slice.vms[2].id: must be a positive integer, got '1005'",
                "cloudrepo:slice.vms[3].id: must be a positive integer, got 1.5",
                "cloudrepo:slice.vms[4].id: must be a positive integer, got True",
                "cloudrepo:slice.vms[5].id: must be a positive integer up to 65535 (the MAC holds 16 bits of it), "
                "got 65536",
            ],
            id="bad-ids",
        ),
        pytest.param(
            {"slice": slice_with(links=[["1002.eth1", "1009.eth1"], ["1002.eth2", "1003.eth3"]])},
            [
                "cloudrepo:slice.links[0].b: '1009.eth1': VM 1009 is not defined in cloudrepo:slice.vms "
                "(defined: 1002, 1003)",
                "cloudrepo:slice.links[1].b: '1003.eth3': VM 1003 has no interface eth3 (data interfaces: eth1, "
                "cloudrepo:slice.vms[1].dataInterfaces: 1)",
            ],
            id="undefined-vm-or-interface",
        ),
        pytest.param(
            {"slice": slice_with(links=[["1002.eth0", "1003.eth1"]])},
            [
                "cloudrepo:slice.links[0].a: '1002.eth0': eth0 is the management interface and cannot be linked"
            ],
            id="eth0-in-link",
        ),
        pytest.param(
            {"slice": slice_with(links=[["1002.eth1", "1003.eth1"], ["1002.eth2", "1003.eth1"]])},
            ["cloudrepo:slice.links[1]: interface 1003.eth1 is already in cloudrepo:slice.links[0]"],
            id="interface-in-two-links",
        ),
        pytest.param(
            {"slice": slice_with(links=[["1002.eth1", "1003.eth1"], ["1003.eth1", "1002.eth1"]])},
            [
                "cloudrepo:slice.links[1]: duplicate link 1002.eth1 -- 1003.eth1 (also cloudrepo:slice.links[0])"
            ],
            id="duplicate-link",
        ),
        pytest.param(
            {"slice": slice_with(links=[["1002.eth1", "1002.eth1"], ["1002.eth1", "1002.eth2"]])},
            [
                "cloudrepo:slice.links[0]: self link: 1002.eth1 is linked to itself",
                "cloudrepo:slice.links[1]: self link: 1002.eth1 and 1002.eth2 are interfaces of the same VM 1002",
            ],
            id="self-link",
        ),
        pytest.param(
            {"slice": slice_with(links=[["1002.eth1", "1003.eth1; reboot"], ["eth1", "1003.eth1"]])},
            [
                "cloudrepo:slice.links[0].b: '1003.eth1; reboot' is not an interface of the form VM.ethN "
                '(e.g. "1002.eth1")',
                "cloudrepo:slice.links[1].a: 'eth1' is not an interface of the form VM.ethN (e.g. \"1002.eth1\")",
            ],
            id="malformed-endpoint",
        ),
        pytest.param(
            {
                "slice": slice_with(
                    links=[
                        {"a": "1002.eth1", "b": "1003.eth1", "vlan": 140},
                        {"a": "1002.eth2", "b": "1004.eth1", "vlan": 125},
                        {"a": "1002.eth3", "b": "1004.eth2", "vlan": 125},
                    ],
                    vms=vms(
                        {"id": 1002, "worker": "worker1", "dataInterfaces": 3},
                        {"id": 1003, "worker": "worker2", "dataInterfaces": 1},
                        {"id": 1004, "worker": "worker2", "dataInterfaces": 2},
                    ),
                )
            },
            [
                "cloudrepo:slice.links[0].vlan: pinned VLAN 140 is outside the pool 120..139 "
                "(cloudrepo:slice.vlanPool.start: 120)",
                "cloudrepo:slice.links[2].vlan: VLAN 125 is pinned twice (also cloudrepo:slice.links[1])",
            ],
            id="pinned-vlan",
        ),
        pytest.param(
            {"slice": slice_with(vlanPool={"start": 4080})},
            [
                "cloudrepo:slice.vlanPool.start: the pool 4080..4099 reaches past VLAN 4094, got 4080",
                "cloudrepo:slice.vlanPool.start: the pool 4080..4099 contains the parking VLAN 4094 "
                "(cloudrepo:parkingVlan)",
            ],
            id="pool-past-4094",
        ),
        pytest.param(
            {"slice": slice_with(vlanPool={"start": 390})},
            [
                "cloudrepo:slice.vlanPool.start: the pool 390..409 contains VLAN 400 (the shared internet VLAN)"
            ],
            id="pool-contains-400",
        ),
        pytest.param(
            {"slice": slice_with(vlanPool={"start": 200}), "parkingVlan": 210},
            [
                "cloudrepo:slice.vlanPool.start: the pool 200..219 contains the parking VLAN 210 "
                "(cloudrepo:parkingVlan)"
            ],
            id="pool-contains-parking",
        ),
        pytest.param(
            {"slice": slice_with(vlanPool={"start": 0})},
            ["cloudrepo:slice.vlanPool.start: the pool 0..19 starts below VLAN 1, got 0"],
            id="pool-below-1",
        ),
        pytest.param(
            {"parkingVlan": 400},
            ["cloudrepo:parkingVlan: VLAN 400 is the shared internet VLAN, not a parking VLAN"],
            id="parking-400",
        ),
        pytest.param(
            {"parkingVlan": "4095"},
            ["cloudrepo:parkingVlan: input should be less than or equal to 4094, got 4095"],
            id="parking-range",
        ),
        pytest.param(
            {
                "slice": slice_with(
                    vms=vms({"id": 65000, "worker": "worker1", "dataInterfaces": 100}), links=[]
                )
            },
            [
                "cloudrepo:slice.vms[0].dataInterfaces: VM 65000: 100 data interfaces: TAP interface name "
                "'tap_65000_eth100' is 16 characters, over the Linux limit of 15"
            ],
            id="tap-name-too-long",
        ),
        pytest.param(
            {"slice": slice_with(vms=vms({"id": 7, "worker": "worker1", "dataInterfaces": 300}), links=[])},
            [
                "cloudrepo:slice.vms[0].dataInterfaces: VM 7: at most 255 data interfaces (the MAC holds the "
                "interface number in one byte), got 300"
            ],
            id="mac-index",
        ),
        pytest.param(
            {
                "bridge": "br-integration-1",
                "networkNode": {"host": "10.0.10.3", "uplink": "enp0s31f6-uplink"},
            },
            [
                "cloudrepo:networkNode.uplink: interface name 'enp0s31f6-uplink' is 16 characters, over the "
                "Linux limit of 15",
                "cloudrepo:bridge: interface name 'br-integration-1' is 16 characters, over the Linux limit of 15",
            ],
            id="host-names-too-long",
        ),
        pytest.param(
            {"slice": slice_with(vlanPool={"start": 980})},
            [],
            id="pool-980-fits",  # gw_vlan999, dhcp_v999 and ns-dhcp-vlan999 all fit in 15 characters
        ),
        pytest.param(
            {"slice": slice_with(vlanPool={"start": 990})},
            [
                "cloudrepo:slice.vlanPool.start: VLAN 1009: namespace name 'ns-dhcp-vlan1009' is 16 characters, "
                "over the Linux limit of 15"
            ],
            id="pool-namespace-name-too-long",
        ),
        pytest.param(
            {"sliec": {"name": "x"}, "bridg": "br-int", "parkingVLAN": "7"},
            [
                "cloudrepo:bridg: unknown config key; did you mean 'bridge'? (known: cloudrepo:networkNode, "
                "cloudrepo:workers, cloudrepo:ssh, cloudrepo:sshPrivateKey, cloudrepo:bridge, cloudrepo:slice, "
                "cloudrepo:parkingVlan, cloudrepo:dnsServers, cloudrepo:qemu)",
                "cloudrepo:parkingVLAN: unknown config key; did you mean 'parkingVlan'? (known: "
                "cloudrepo:networkNode, cloudrepo:workers, cloudrepo:ssh, cloudrepo:sshPrivateKey, "
                "cloudrepo:bridge, cloudrepo:slice, cloudrepo:parkingVlan, cloudrepo:dnsServers, cloudrepo:qemu)",
                "cloudrepo:sliec: unknown config key; did you mean 'slice'? (known: cloudrepo:networkNode, "
                "cloudrepo:workers, cloudrepo:ssh, cloudrepo:sshPrivateKey, cloudrepo:bridge, cloudrepo:slice, "
                "cloudrepo:parkingVlan, cloudrepo:dnsServers, cloudrepo:qemu)",
            ],
            id="unknown-config-keys",
        ),
        pytest.param(
            {
                "networkNode": {"host": "10.0.10.3", "uplnk": "ens3"},
                "workers": {"worker1": {"host": "10.0.10.1", "prot": 22}, "worker2": {"host": "10.0.10.2"}},
                "ssh": {"user": "ubuntu", "privateKeyPath": "k", "knownHostsPath": "kh", "sudoo": True},
                "slice": slice_with(
                    vlanPool={"start": 120, "size": 20},
                    vms=vms(
                        {"id": 1002, "worker": "worker1", "dataInterfaces": 2, "internett": True},
                        {"id": 1003, "worker": "worker2", "dataInterfaces": 1},
                    ),
                    links=[{"a": "1002.eth1", "b": "1003.eth1", "vlna": 125}],
                    nmae="x",
                ),
            },
            [
                "cloudrepo:networkNode.uplnk: unknown key 'uplnk'; did you mean 'uplink'? (known: host, port, uplink)",
                "cloudrepo:workers.worker1.prot: unknown key 'prot'; did you mean 'port'? (known: host, port)",
                "cloudrepo:ssh.sudoo: unknown key 'sudoo'; did you mean 'sudo'? (known: user, privateKeyPath, "
                "knownHostsPath, sudo, connectTimeout, commandTimeout)",
                "cloudrepo:slice.vlanPool.size: unknown key 'size' (known: start)",
                "cloudrepo:slice.nmae: unknown key 'nmae'; did you mean 'name'? (known: name, vlanPool, vms, links, topology, cloudInit, checks)",
            ],
            id="unknown-fields",
        ),
        pytest.param(
            {"ssh": {"user": "ubuntu", "knownHostsPath": "~/.ssh/known_hosts"}},
            [
                "cloudrepo:ssh: no SSH key configured: set ssh.privateKeyPath or the secret cloudrepo:sshPrivateKey "
                "(pulumi config set --secret cloudrepo:sshPrivateKey < KEY)"
            ],
            id="no-ssh-key",
        ),
        pytest.param(
            {"ssh": {"user": "ubuntu", "privateKeyPath": "k"}},
            ["cloudrepo:ssh.knownHostsPath: required"],
            id="no-known-hosts",
        ),
        pytest.param(
            {"slice": None, "workers": None},
            ["cloudrepo:workers: required", "cloudrepo:slice: required"],
            id="missing-keys",
        ),
        pytest.param(
            {"slice": "{not json"},
            [
                "cloudrepo:slice: not a YAML/JSON object or list (Expecting property name enclosed in double quotes), "
                "got '{not json'"
            ],
            id="not-json",
        ),
        pytest.param(
            {"dnsServers": ["1.1.1.1", "dns.example"]},
            ["cloudrepo:dnsServers[1]: 'dns.example' is not an IPv4 address"],
            id="dns-servers",
        ),
        pytest.param(
            {"networkNode": {"host": "10.0.10.3", "port": 70000}},
            ["cloudrepo:networkNode.port: input should be less than or equal to 65535, got 70000"],
            id="port-range",
        ),
        pytest.param(
            {"workers": {"worker1": {"host": "10.0.10.1"}, "network": {"host": "10.0.10.2"}}},
            [
                "cloudrepo:workers.network: worker name 'network' is reserved for cloudrepo:networkNode",
                "cloudrepo:slice.vms[1].worker: VM 1003: unknown worker 'worker2'; did you mean 'worker1'? "
                "(cloudrepo:workers has: network, worker1)",
            ],
            id="reserved-worker-name",
        ),
    ],
)
def test_one_bad_input(changes: dict[str, Any], expected: list[str]) -> None:
    config = with_changes(**changes)
    if not expected:
        load_config(raw_config(config), "dev")
        return
    assert problems(config) == expected


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        pytest.param(
            {"slice": slice_with(name="demo;reboot")},
            [
                "cloudrepo:slice.name: slice name 'demo;reboot' must be 1..63 characters, start with a letter or "
                "digit and contain only letters, digits, '_', '.' and '-'"
            ],
            id="slice-name",
        ),
        pytest.param(
            {"slice": slice_with(name="shared")},
            ["cloudrepo:slice.name: slice name 'shared' is reserved for the objects slices share"],
            id="slice-name-shared",
        ),
        pytest.param(
            {"workers": {"worker1": {"host": "10.0.10.1"}, "$(reboot)": {"host": "10.0.10.2"}}},
            [
                "cloudrepo:workers['$(reboot)']: node name '$(reboot)' must be 1..63 characters, start with a "
                "letter or digit and contain only letters, digits, '_', '.' and '-'",
                "cloudrepo:slice.vms[1].worker: VM 1003: unknown worker 'worker2'; did you mean 'worker1'? "
                "(cloudrepo:workers has: $(reboot), worker1)",
            ],
            id="worker-name",
        ),
        pytest.param(
            {
                "networkNode": {"host": "10.0.10.3;reboot"},
                "workers": {"worker1": {"host": "-oProxyCommand=x"}, "worker2": {"host": "a b"}},
            },
            [
                "cloudrepo:networkNode.host: '10.0.10.3;reboot' is not a host name or IP address",
                "cloudrepo:workers.worker1.host: '-oProxyCommand=x' is not a host name or IP address",
                "cloudrepo:workers.worker2.host: 'a b' is not a host name or IP address",
            ],
            id="hosts",
        ),
        pytest.param(
            {"bridge": "br-int;reboot", "networkNode": {"host": "10.0.10.3", "uplink": "$(id)"}},
            [
                "cloudrepo:networkNode.uplink: interface name '$(id)' must start with a letter or digit and "
                "contain only letters, digits, '_', '.' and '-'",
                "cloudrepo:bridge: interface name 'br-int;reboot' must start with a letter or digit and contain "
                "only letters, digits, '_', '.' and '-'",
            ],
            id="interface-names",
        ),
        pytest.param(
            {"ssh": {"user": "root`id`", "privateKeyPath": "k", "knownHostsPath": "kh"}},
            [
                "cloudrepo:ssh.user: 'root`id`' is not a login name (lower-case letters, digits, '_' and '-', "
                "starting with a letter or '_')"
            ],
            id="user",
        ),
    ],
)
def test_shell_metacharacters_are_rejected(changes: dict[str, Any], expected: list[str]) -> None:
    assert problems(with_changes(**changes)) == expected


def test_stack_name_as_slice_name_is_checked() -> None:
    config = with_changes(slice=slice_with(name=None))
    del config["cloudrepo:slice"]["name"]
    assert problems(config, stack="shared") == [
        "cloudrepo:slice.name: slice name 'shared' is reserved for the objects slices share "
        "(the stack name, the default of slice.name)"
    ]


def _links(n: int) -> tuple[list[dict[str, Any]], list[list[str]]]:
    """n links between VM 2001 (n data interfaces) and VM 2002 (n data interfaces)."""
    vm_list = [
        {"id": 2001, "worker": "worker1", "dataInterfaces": n},
        {"id": 2002, "worker": "worker2", "dataInterfaces": n},
    ]
    return vm_list, [[f"2001.eth{i}", f"2002.eth{i}"] for i in range(1, n + 1)]


def test_twenty_links_fit() -> None:
    vm_list, links = _links(20)
    cfg = load_config(raw_config(with_changes(slice=slice_with(vms=vm_list, links=links))), "dev")
    assert len(cfg.links) == 20


def test_21st_link_exhausts_the_pool() -> None:
    vm_list, links = _links(21)
    assert problems(with_changes(slice=slice_with(vms=vm_list, links=links))) == [
        "cloudrepo:slice.links: VLAN pool exhausted: 21 links, but the pool 120..139 holds 20 VLANs "
        "(no VLAN for cloudrepo:slice.links[20] (2001.eth21 -- 2002.eth21))"
    ]


def test_all_problems_of_one_config_in_one_error() -> None:
    vm_list, links = _links(21)
    config = with_changes(
        networkNode={"host": "10.0.10.3", "uplnk": "ens3"},
        ssh={"user": "ubuntu", "knownHostsPath": "kh"},
        bridge="br;x",
        sliec="typo",
        slice=slice_with(
            vlanPool={"start": 125},
            vms=[
                *vm_list,
                {"id": 1002, "worker": "worker9", "dataInterfaces": 1, "internett": True},
                {"id": 2001, "worker": "worker1"},
                {"id": -5, "worker": "worker1"},
            ],
            links=[*links, ["2001.eth0", "3000.eth1"], {"a": "2001.eth1", "b": "2001.eth2", "vlan": 999}],
        ),
    )
    assert problems(config) == [
        "cloudrepo:sliec: unknown config key; did you mean 'slice'? (known: cloudrepo:networkNode, "
        "cloudrepo:workers, cloudrepo:ssh, cloudrepo:sshPrivateKey, cloudrepo:bridge, cloudrepo:slice, "
        "cloudrepo:parkingVlan, cloudrepo:dnsServers, cloudrepo:qemu)",
        "cloudrepo:networkNode.uplnk: unknown key 'uplnk'; did you mean 'uplink'? (known: host, port, uplink)",
        "cloudrepo:ssh: no SSH key configured: set ssh.privateKeyPath or the secret cloudrepo:sshPrivateKey "
        "(pulumi config set --secret cloudrepo:sshPrivateKey < KEY)",
        "cloudrepo:bridge: interface name 'br;x' must start with a letter or digit and contain only letters, "
        "digits, '_', '.' and '-'",
        "cloudrepo:slice.vms[2].internett: unknown key 'internett'; did you mean 'internet'? "
        "(known: id, worker, dataInterfaces, internet, launch)",
        "cloudrepo:slice.vms[2].worker: VM 1002: unknown worker 'worker9'; did you mean 'worker2'? "
        "(cloudrepo:workers has: worker1, worker2)",
        "cloudrepo:slice.vms[3].id: duplicate VM id 2001 (also cloudrepo:slice.vms[0])",
        "cloudrepo:slice.vms[4].id: must be a positive integer up to 65535 (the MAC holds 16 bits of it), got -5",
        "cloudrepo:slice.links[21].a: '2001.eth0': eth0 is the management interface and cannot be linked",
        "cloudrepo:slice.links[21].b: '3000.eth1': VM 3000 is not defined in cloudrepo:slice.vms (defined: 2001, 2002)",
        "cloudrepo:slice.links[22]: self link: 2001.eth1 and 2001.eth2 are interfaces of the same VM 2001",
        "cloudrepo:slice.links[22].vlan: pinned VLAN 999 is outside the pool 125..144 "
        "(cloudrepo:slice.vlanPool.start: 125)",
        "cloudrepo:slice.links[22]: interface 2001.eth1 is already in cloudrepo:slice.links[0]",
        "cloudrepo:slice.links[22]: interface 2001.eth2 is already in cloudrepo:slice.links[1]",
        "cloudrepo:slice.links: VLAN pool exhausted: 23 links, but the pool 125..144 holds 20 VLANs "
        "(no VLAN for cloudrepo:slice.links[20] (2001.eth21 -- 2002.eth21), cloudrepo:slice.links[21] "
        "(2001.eth0 -- 3000.eth1), cloudrepo:slice.links[22] (2001.eth1 -- 2001.eth2))",
    ]


def test_config_error_is_a_clean_run_error() -> None:
    """`pulumi preview` prints a RunError's message without a traceback."""
    assert issubclass(ConfigError, pulumi.RunError)


def test_raw_stack_config_sees_every_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from pulumi.runtime import config as runtime_config

    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({"cloudrepo:sliec": "x", "cloudrepo:bridge": "br-a"}))
    token = runtime_config.CONFIG.set({"cloudrepo:bridge": "br-b", "cloudrepo:slice": "{}"})
    try:
        assert raw_stack_config() == {
            "cloudrepo:sliec": "x",
            "cloudrepo:bridge": "br-b",
            "cloudrepo:slice": "{}",
        }
    finally:
        runtime_config.CONFIG.reset(token)
