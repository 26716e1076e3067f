"""The command's pure parts: the verbs' edits, the checks before a write, the tables, usage errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cloudrepo import edits, stackfile, tables
from cloudrepo.cli import USAGE, main
from tests.cfgkit import BASE
from vocabulary.errors import ConfigError

GOLDEN = Path(__file__).parents[1] / "components" / "golden"


def base_config() -> dict[str, Any]:
    return json.loads(json.dumps(BASE))


def test_verbs_build_the_section_the_yaml_holds() -> None:
    s = edits.new_slice(120, {"name": "other", "vms": []})
    s = edits.add_vm(s, 1002, "worker1", 2, True)
    s = edits.add_vm(s, 1003, "worker2", 1, False)
    s = edits.add_link(s, "1002.eth1", "1003.eth1")
    s = edits.add_link(s, "1002.eth2", "1003.eth0", vlan=125)
    s = edits.add_topology(s, "bus", [1002, 1003])
    assert s == {
        "vlanPool": {"start": 120},
        "vms": [
            {"id": 1002, "worker": "worker1", "dataInterfaces": 2, "internet": True},
            {"id": 1003, "worker": "worker2", "dataInterfaces": 1},
        ],
        "links": [["1002.eth1", "1003.eth1"], {"a": "1002.eth2", "b": "1003.eth0", "vlan": 125}],
        "topology": [{"preset": "bus", "vms": [1002, 1003]}],
    }


def test_rm_vm_takes_its_links_and_shrinks_presets() -> None:
    s: dict[str, Any] = {
        "vlanPool": {"start": 120},
        "vms": [{"id": i, "worker": "worker1", "dataInterfaces": 3} for i in (1, 2, 3, 4)],
        "links": [["1.eth1", "2.eth1"], {"a": "3.eth1", "b": "4.eth1"}],
        "topology": [{"preset": "ring", "vms": [1, 3, 4]}, {"preset": "mesh", "vms": [2, 3, 4]}],
    }
    out, notes = edits.rm_vm(s, 3)
    assert [v["id"] for v in out["vms"]] == [1, 2, 4]
    assert out["links"] == [["1.eth1", "2.eth1"]]
    assert out["topology"] == [{"preset": "mesh", "vms": [2, 4]}]
    assert notes == [
        "link 3.eth1 -- 4.eth1 removed",
        "ring of [1, 3, 4] removed (too few VMs left)",
        "mesh now of [2, 4]",
    ]
    assert s["links"][1] == {"a": "3.eth1", "b": "4.eth1"}, "the edit changed its input"
    with pytest.raises(edits.EditError, match="VM 9 is not in the slice"):
        edits.rm_vm(s, 9)


def test_rm_link_either_order_and_unknown() -> None:
    s = {"links": [["1.eth1", "2.eth1"], {"a": "1.eth2", "b": "2.eth2", "vlan": 130}]}
    assert edits.rm_link(s, "2.eth2", "1.eth2")["links"] == [["1.eth1", "2.eth1"]]
    with pytest.raises(edits.EditError, match=r"no written link 1\.eth3 -- 2\.eth1"):
        edits.rm_link(s, "1.eth3", "2.eth1")


def test_the_21st_link_is_refused_by_the_checks() -> None:
    config = base_config()
    section = edits.new_slice(120)
    for i in range(21):
        section = edits.add_vm(section, 2000 + 2 * i, "worker1", 1, False)
        section = edits.add_vm(section, 2001 + 2 * i, "worker2", 1, False)
        section = edits.add_link(section, f"{2000 + 2 * i}.eth1", f"{2001 + 2 * i}.eth1")
        config["cloudrepo:slice"] = section
        if i < 20:
            stackfile.check(config, "s", {})
    with pytest.raises(ConfigError, match="VLAN pool exhausted: 21 links"):
        stackfile.check(config, "s", {})


def test_checks_use_the_stack_memory() -> None:
    """A pin on a VLAN a deployed link holds is refused, as at preview."""
    config = base_config()
    outputs = {"links": [{"endpoints": ["1002.eth1", "1003.eth1"], "vlan": 120}]}
    config["cloudrepo:slice"] = edits.add_link(
        edits.add_vm(config["cloudrepo:slice"], 1004, "worker1", 1, False), "1002.eth2", "1004.eth1", vlan=120
    )
    with pytest.raises(ConfigError, match="120"):
        stackfile.check(config, "s", outputs)


def test_secrets_count_as_set_without_being_read() -> None:
    config = base_config()
    config["cloudrepo:ssh"] = {k: v for k, v in config["cloudrepo:ssh"].items() if k != "privateKeyPath"}
    with pytest.raises(ConfigError, match="no SSH key configured"):
        stackfile.check(config, "s", {})
    config["cloudrepo:sshPrivateKey"] = {"secure": "v1:abc"}
    assert stackfile.check(config, "s", {}).config.ssh.private_key is not None


def test_stack_file_round_trip_keeps_objects_and_secrets(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.s.yaml"
    doc = {
        "encryptionsalt": "v1:x",
        "config": {**base_config(), "cloudrepo:sshPrivateKey": {"secure": "v1:y"}},
    }
    stackfile.write(path, doc)
    assert stackfile.read(path) == doc
    assert "cloudrepo:networkNode: {host: 10.0.10.3}" in path.read_text()  # objects, not JSON text


def test_slice_from_yaml_accepts_three_forms(tmp_path: Path) -> None:
    section: dict[str, Any] = {"vlanPool": {"start": 140}, "vms": [], "links": []}
    docs: tuple[dict[str, Any], ...] = (
        {"config": {"cloudrepo:slice": section}},
        {"cloudrepo:slice": section},
        section,
    )
    for n, doc in enumerate(docs):
        f = tmp_path / f"{n}.yaml"
        stackfile.write(f, doc)
        assert stackfile.slice_from_yaml(f) == (section, [])


def test_show_table() -> None:
    outputs = json.loads((GOLDEN / "dev.json").read_text())["outputs"]
    text = tables.show("dev", outputs)
    lines = text.splitlines()
    assert lines[0] == "slice demo (stack dev): VLAN pool 120..139, 2 of 20 used"
    assert lines[2].split() == ["VM", "worker", "interface", "TAP", "VLAN", "IP"]
    assert lines[3].split() == ["1002", "worker1", "eth0", "tap_1002_eth0", "400", "-"]
    assert lines[6].split() == ["1003", "worker2", "eth0", "tap_1003_eth0", "parked", "-"]
    assert lines[-2].split() == ["120", "192.168.120.0/24", "192.168.120.1", "1002.eth1", "--", "1003.eth1"]
    assert tables.show("x", {}) == "slice x: not deployed (cloudrepo deploy x)"


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["vm", "add", "s", "--worker", "w"],
        ["topology", "add", "s", "hexagon", "1", "2"],
        ["link", "add", "s", "1.eth1"],
        ["diagram", "s"],
        ["vm", "add", "s", "--id", "x", "--worker", "w"],
    ],
)
def test_bad_usage_exits_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == USAGE
    assert "usage: cloudrepo" in capsys.readouterr().err


def test_a_picture_format_graphviz_is_not_asked_for_is_bad_usage(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("cloudrepo.cli.apply_environment", lambda: None)
    assert main(["diagram", "s", "-o", "s.pdf"]) == USAGE
    assert "unknown picture format '.pdf'" in capsys.readouterr().err
