"""Cloud-init in the slice config (`components.guest`, through `load_config` as `pulumi preview` runs it):
`launch.cloudInit` over `slice.cloudInit`, merged per key, with the defaults (`cloud`, `vm<id>`); only VMs
with a disk image get a seed; every hostile value of every key is accepted or refused at its key path
(never an exception, never key text shown); `userData` is a `#cloud-config` file under the boot files'
rules whose content no message shows; the launch plan's seed follows every change of keys, user, host
name, user-data and MACs, and nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from components.allocation import allocate_vlans
from components.cloudinit import parsed
from components.config import ConfigError, load_config
from components.outputs import stack_outputs
from components.plan import build_plan
from components.vms import launch_plan
from tests.cfgkit import raw_config, slice_with, with_changes
from tests.fuzzkit import PEM, fuzz_settings, hostile_values, leaks_key
from tests.unit.components.test_cloudinit import PUBLIC_KEYS

IMAGE = {"image": "images/disk.qcow2"}
KERNEL = {"kernel": "images/vmlinuz"}
SECRET_LINE = "password: hunter2-do-not-show"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp_path = tmp_path_factory.mktemp("project")
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "vmlinuz").write_bytes(b"kernel")
    (tmp_path / "images" / "disk.qcow2").write_bytes(b"QFI\xfb rest")
    (tmp_path / "images" / "user.yaml").write_text("#cloud-config\nruncmd: [[touch, /x]]\n")
    (tmp_path / "secret.yaml").write_text(f"#cloud-config\n{SECRET_LINE}\n")
    return tmp_path


def cfg(
    launches: dict[int, dict[str, Any]], defaults: Any = None, data_interfaces: int = 1
) -> dict[str, Any]:
    vms: list[dict[str, Any]] = [
        {"id": 1002, "worker": "worker1", "dataInterfaces": data_interfaces, "internet": True},
        {"id": 1003, "worker": "worker2", "dataInterfaces": 1},
    ]
    for vm in vms:
        if vm["id"] in launches:
            vm["launch"] = {"accel": "tcg", **launches[vm["id"]]}
    section = slice_with(vms=vms, links=[["1002.eth1", "1003.eth1"]])
    if defaults is not None:
        section["cloudInit"] = defaults
    return with_changes(slice=section)


def problems(config: dict[str, Any], base: Path) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_config(raw_config(config), "dev", base)
    return err.value.problems


def test_defaults_merge_per_key_and_fill_in(base: Path) -> None:
    defaults = {"sshAuthorizedKeys": [PUBLIC_KEYS[0]], "user": "alice", "userData": "images/user.yaml"}
    own = {"hostname": "web", "sshAuthorizedKeys": [PUBLIC_KEYS[1]]}
    config = load_config(
        raw_config(cfg({1002: {**IMAGE, "cloudInit": own}, 1003: IMAGE}, defaults)), "dev", base
    )
    a, b = config.launches[1002].cloud_init, config.launches[1003].cloud_init
    assert a is not None and b is not None
    assert (a.user, a.hostname, a.ssh_authorized_keys) == ("alice", "web", (PUBLIC_KEYS[1],))
    assert (b.user, b.hostname, b.ssh_authorized_keys) == ("alice", "vm1003", (PUBLIC_KEYS[0],))
    assert a.user_data == b.user_data == {"runcmd": [["touch", "/x"]]}
    alone = load_config(raw_config(cfg({1002: {**IMAGE, "cloudInit": own}})), "dev", base)
    ci = alone.launches[1002].cloud_init
    assert ci is not None and (ci.user, ci.user_data) == ("cloud", None)


def test_only_vms_with_a_disk_image_get_the_slices_seed(base: Path) -> None:
    defaults = {"sshAuthorizedKeys": [PUBLIC_KEYS[0]]}
    config = load_config(raw_config(cfg({1002: IMAGE, 1003: KERNEL}, defaults)), "dev", base)
    assert config.launches[1002].cloud_init is not None and config.launches[1003].cloud_init is None
    plan = build_plan(config, allocate_vlans(config.links, config.pool, {}))
    vms = stack_outputs(plan)["vms"]
    assert vms["1002"]["cloudInit"] == {
        "user": "cloud",
        "hostname": "vm1002",
        "addresses": {"eth0": None, "eth1": vms["1002"]["interfaces"]["eth1"]["ip"]},  # eth0: VLAN 400
        "ssh": "cloudrepo ssh dev 1002",
    }
    assert "cloudInit" not in vms["1003"]


def test_the_rules_of_the_seed_all_at_once(base: Path) -> None:
    defaults = {"hostname": "same", "user": "root", "colour": 1}
    got = problems(
        cfg(
            {1002: {**IMAGE, "cloudInit": {"sshAuthorizedKeys": []}}, 1003: {**KERNEL, "cloudInit": {}}},
            defaults,
            data_interfaces=40,
        ),
        base,
    )
    where = "cloudrepo:slice"
    assert f"{where}.cloudInit.user: user 'root' is an account of the image; choose a new login name" in got
    assert any(p.startswith(f"{where}.cloudInit.colour: unknown key 'colour'") for p in got)
    assert (
        f"{where}.cloudInit.hostname: a VM's own (launch.cloudInit.hostname; default vm<id>), not the slice's"
        in got
    )
    assert any(p.startswith(f"{where}.vms[0].launch.cloudInit.sshAuthorizedKeys: ") for p in got), got
    assert (
        f"{where}.vms[0].dataInterfaces: 40: a VM with a cloud-init seed has at most 31 (its seed names at "
        "most 32 interfaces)" in got
    )
    assert (
        f"{where}.vms[1].launch.cloudInit: cloud-init needs a disk image to boot (launch.image), "
        "this launch has none" in got
    )


def test_a_vm_needs_a_key_from_somewhere(base: Path) -> None:
    got = problems(cfg({1002: {**IMAGE, "cloudInit": {"user": "bob"}}}), base)
    assert got == [
        "cloudrepo:slice.vms[0].launch.cloudInit.sshAuthorizedKeys: at least one OpenSSH public key is "
        "needed (here or in cloudrepo:slice.cloudInit.sshAuthorizedKeys)"
    ]


def test_a_key_twice_is_refused_and_private_key_text_never_shown(base: Path) -> None:
    got = problems(
        cfg({1002: {**IMAGE, "cloudInit": {"sshAuthorizedKeys": [PUBLIC_KEYS[0], PUBLIC_KEYS[0]]}}}), base
    )
    assert len(got) == 1 and "is listed twice" in got[0]
    leaked = problems(cfg({1002: {**IMAGE, "cloudInit": {"sshAuthorizedKeys": [PEM]}}}), base)
    assert leaked[0].startswith("cloudrepo:slice.vms[0].launch.cloudInit.sshAuthorizedKeys[0]: ")
    assert leaks_key("\n".join(leaked)) == []


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"runcmd: []\n", "must start with the line '#cloud-config'"),
        (b"#cloud-config\n[unclosed\n" + SECRET_LINE.encode(), "is not YAML at line"),
        (b"#cloud-config\n- a list\n", "must hold a mapping of cloud-config keys, not a list"),
        (b"#cloud-config\nssh_keys: {ed25519_private: x}\n", "sets 'ssh_keys'"),
        (b"#cloud-config\n\xff\xfe\n", "is not UTF-8 text"),
        (b"#cloud-config\nx: " + b"[" * 30000 + b"]" * 30000 + b"\n", "is not YAML at line 2"),
        (b"#cloud-config\nx: " + b"[" * 40 + b"]" * 40 + b"\n", "nested more than 32 levels deep"),
        (b"#cloud-config\na: &x [" + SECRET_LINE.encode() + b"]\nb: [*x, *x]\n", "uses YAML aliases"),
        (b"#cloud-config\nx: " + b"a" * (1 << 16) + b"\n", "over 65536 bytes"),
    ],
)
def test_user_data_files_are_checked_and_never_shown(base: Path, content: bytes, why: str) -> None:
    (base / "images" / "bad.yaml").write_bytes(content)
    got = problems(
        cfg(
            {
                1002: {
                    **IMAGE,
                    "cloudInit": {"sshAuthorizedKeys": [PUBLIC_KEYS[0]], "userData": "images/bad.yaml"},
                }
            }
        ),
        base,
    )
    assert len(got) == 1 and got[0].startswith(
        "cloudrepo:slice.vms[0].launch.cloudInit.userData: 'images/bad.yaml'"
    )
    assert why in got[0] and "hunter2" not in got[0] and "aaaa" not in got[0], got


def test_user_data_comes_from_the_image_dirs_only(base: Path) -> None:
    got = problems(
        cfg({1002: IMAGE}, {"sshAuthorizedKeys": [PUBLIC_KEYS[0]], "userData": "secret.yaml"}), base
    )
    assert len(got) == 1 and got[0].startswith("cloudrepo:slice.cloudInit.userData: 'secret.yaml' is outside")
    assert "hunter2" not in got[0]


KEYS = ("sshAuthorizedKeys", "user", "userData", "hostname")


@fuzz_settings(ci=200, long=3000)
@given(st.sampled_from(KEYS), hostile_values(), st.booleans())
def test_hostile_values_are_accepted_or_refused_at_their_key_path(
    base: Path, key: str, value: Any, slice_level: bool
) -> None:
    own: dict[str, Any] = {"sshAuthorizedKeys": [PUBLIC_KEYS[0]]}
    if slice_level:
        config = cfg({1002: IMAGE}, {**own, key: value})
        where = "cloudrepo:slice.cloudInit"
    else:
        config = cfg({1002: {**IMAGE, "cloudInit": {**own, key: value}}})
        where = "cloudrepo:slice.vms[0].launch.cloudInit"
    try:
        load_config(raw_config(config), "dev", base)
    except ConfigError as err:
        assert err.problems, err
        vm = "cloudrepo:slice.vms[0].launch.cloudInit"  # the default null: the VM lacks a key
        for p in err.problems:
            assert p.startswith((where, vm)), (p, err.problems)
        assert leaks_key("\n".join(err.problems)) == []


def seed_of(base: Path, **over: Any) -> str:
    ci = {"sshAuthorizedKeys": [PUBLIC_KEYS[0]], "user": "alice", "hostname": "web", **over}
    config = load_config(raw_config(cfg({1002: {**IMAGE, "cloudInit": ci}})), "dev", base)
    _, vms = launch_plan(build_plan(config, allocate_vlans(config.links, config.pool, {})))
    seed = vms[0].seed
    assert seed is not None and vms[0].spec.seed == seed.sha256
    assert parsed(seed.meta_data)["local-hostname"] == ci["hostname"]
    return seed.sha256


def test_the_seed_follows_its_content_and_nothing_else(base: Path) -> None:
    same = seed_of(base)
    assert seed_of(base) == same
    changed = [
        seed_of(base, sshAuthorizedKeys=[PUBLIC_KEYS[1]]),
        seed_of(base, sshAuthorizedKeys=[PUBLIC_KEYS[0], PUBLIC_KEYS[1]]),
        seed_of(base, user="bob"),
        seed_of(base, hostname="other"),
        seed_of(base, userData="images/user.yaml"),
    ]
    assert len({same, *changed}) == 1 + len(changed)
