"""The CloudSeed kind's plans (pure): from any state of the VM's directory the plan makes what is missing
and only that (the host key only when absent, the seed only when its volume is not there), another slice's
directory is refused, the delete is nothing when gone or foreign; the documents reach the host as
here-documents only (in no argv) and are secrets of the resource; the probe reads back as parsed. The seed's
hash is part of QEMU's argv, so a new seed restarts the VM."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from providers import hoststate
from providers.kinds import cloud_seed, qemu_vm
from providers.kinds.cloud_seed import SeedHave, parse_have, plan_delete, plan_ensure
from tests.fuzzkit import fuzz_settings
from transport.script import ScriptResult, StepResult, render
from vocabulary.errors import OwnershipConflict
from vocabulary.naming import owner_mark, seed_path
from vocabulary.specs import CloudSeedSpec, Endpoint, QemuVmSpec, problems, seed_hash

HOST = Endpoint(name="worker1", address="127.0.0.1", port=2201)
UID = "0123456789abcdef0123456789abcdef"
PUBLIC = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGfFAQWnbMwM0xRNDcl1aJuK4nl7LVSNUX4lKsRy/wRs cloudrepo-vm1002"

texts = st.text(st.characters(codec="utf-8", exclude_characters="\x00\r"), max_size=40).map(
    lambda t: t + "\n"
)


def spec(
    meta: str = "instance-id: i-1\n", user: str = "#cloud-config\n", net: str = "version: 2\n"
) -> CloudSeedSpec:
    return CloudSeedSpec(
        slice="s1",
        uid=UID,
        host=HOST,
        vm=1002,
        meta_data=meta,
        user_data=user,
        network_config=net,
        sha256=seed_hash(meta, user, net),
    )


specs = st.builds(spec, texts, texts, texts)
MINE = owner_mark("s1", UID)
names = st.from_regex(r"seed-[0-9a-f]{16}\.img", fullmatch=True)


@st.composite
def haves(draw: Any, s: CloudSeedSpec) -> SeedHave:
    present = draw(st.booleans())
    if not present:
        return SeedHave(False, None, None)
    own = seed_path(s.vm, s.sha256).rsplit("/", 1)[1]
    seeds = draw(st.lists(st.one_of(names, st.just(own)), max_size=3, unique=True))
    return SeedHave(
        True,
        draw(st.sampled_from([MINE, None, "s1"])),
        draw(st.sampled_from([PUBLIC, None])),
        tuple(sorted(seeds)),
    )


def names_of(steps: list[Any]) -> list[str]:
    return [s.name for s in steps]


@fuzz_settings(ci=150, long=2000)
@given(st.data())
def test_the_plan_makes_what_is_missing_and_only_that(data: Any) -> None:
    s = data.draw(specs)
    have = data.draw(haves(s))
    steps = plan_ensure(s, have)
    got = names_of(steps)
    own = seed_path(s.vm, s.sha256).rsplit("/", 1)[1]
    assert ("host key" in got) == (have.host_key is None)
    builds = "seed build" in got
    assert builds == (have.host_key is None or own not in have.seeds)
    assert ("vm dir" in got) == (not have.present or have.owner != MINE)
    if have.present and have.owner == MINE and have.host_key and own in have.seeds:
        assert all(n == "old seed" for n in got) and len(got) == len(have.seeds) - 1
    # the documents only ever as here-documents: never in an argv, always in stdin
    for step in steps:
        for doc in (s.meta_data, s.user_data, s.network_config):
            assert doc.strip() == "" or doc not in step.argv
    if builds:
        stdin = {step.name: step.stdin for step in steps if step.stdin is not None}
        assert stdin == {
            "seed meta-data": s.meta_data,
            "seed user-data": s.user_data,
            "seed network-config": s.network_config,
        }
        text = render(steps, nonce="00112233aabbccdd")
        assert "PRIVATE" not in text
        # the build writes the volume at the path QEMU gets
        assert seed_path(s.vm, s.sha256) in next(st_.argv for st_ in steps if st_.name == "seed build")


def test_another_slices_directory_is_refused_and_left_alone() -> None:
    s = spec()
    other = SeedHave(True, owner_mark("s2", UID), PUBLIC, ())
    with pytest.raises(OwnershipConflict):
        plan_ensure(s, other)
    assert plan_delete(s, other) == []
    assert cloud_seed.foreign(s, other) is not None
    assert plan_delete(s, SeedHave(False, None, None)) == []
    assert names_of(plan_delete(s, SeedHave(True, MINE, PUBLIC, ("seed-0011223344556677.img",)))) == [
        "remove seed"
    ]


def test_the_probe_reads_back() -> None:
    s = spec()
    out = f"present\nowner={MINE}\nhostkey={PUBLIC}\nseed=seed-aa.img\nseed=seed-bb.img\n"
    res = ScriptResult([StepResult("seed state", 0, out)])
    assert parse_have(s, res) == SeedHave(True, MINE, PUBLIC, ("seed-aa.img", "seed-bb.img"))
    assert parse_have(s, ScriptResult([StepResult("seed state", 0, "absent\n")])).gone
    observed, drift = cloud_seed.observe(s, SeedHave(True, MINE, PUBLIC, ()))
    assert observed["hostKey"] == PUBLIC and drift == ["seed volume missing"]


def test_the_documents_are_secret_inputs_and_the_hash_must_match() -> None:
    assert cloud_seed.CloudSeed.secret_inputs == ("metaData", "userData", "networkConfig")
    bad = {**spec().inputs(), "userData": "#cloud-config\nchanged: 1\n"}
    assert ("(inputs)", "sha256: not the hash of the documents") in problems(CloudSeedSpec, bad) or any(
        "not the hash" in why for _, why in problems(CloudSeedSpec, bad)
    )


def test_a_new_seed_is_a_new_qemu_argv() -> None:
    def vm(seed: str | None) -> QemuVmSpec:
        return QemuVmSpec(
            slice="s1", uid=UID, host=HOST, vm=1002, binary="qemu-system-x86_64", accel="tcg", seed=seed
        )

    a, b = spec().sha256, spec(user="#cloud-config\nx: 1\n").sha256
    argv = qemu_vm.qemu_argv(vm(a), "/usr/bin/qemu")
    assert f"file={seed_path(1002, a)},if=virtio,format=raw,readonly=on" in argv
    assert qemu_vm.qemu_argv(vm(b), "/usr/bin/qemu") != argv
    assert not any("seed-" in arg for arg in qemu_vm.qemu_argv(vm(None), "/usr/bin/qemu"))
    have = qemu_vm.VmHave(True, MINE, 42, tuple(argv), None, binary="/usr/bin/qemu")
    assert qemu_vm.running_as_wanted(vm(a), have) and not qemu_vm.running_as_wanted(vm(b), have)
    assert "check seed" in names_of(qemu_vm.plan_ensure(vm(b), have))


def test_the_preflight_names_a_missing_seed_tool() -> None:
    steps = cloud_seed.preflight(spec())
    assert steps[0].name == "tools" and {"cloud-localds", "ssh-keygen"} <= set(steps[0].argv)
    res = ScriptResult([StepResult("tools", 0, "cloud-localds\n")])
    with pytest.raises(
        hoststate.HostNotReady, match="worker1: not ready: missing command\\(s\\): cloud-localds"
    ):
        hoststate.check_ready("worker1", res, None)
