"""Every argument is an answer on the real engine: the command's `main` run in-process against a project and
a file backend of its own (the Automation API and `pulumi` underneath), fed generated slice names (hostile
ones and stack names the engine may or may not have) and hostile values: exit 0, 1 or 2 with a message,
never a traceback, and a refused call leaves the checkout as it was."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from cloudrepo import cli, stackfile
from lab.pulumi_cli import LAB_PASSPHRASE, PulumiCLI, make_project
from tests.fuzzkit import LONG, hostile_text

pytestmark = pytest.mark.integration

SLICE = "s1"
CLOUD = {
    "cloudrepo:networkNode": {"host": "127.0.0.1", "port": 2200},
    "cloudrepo:workers": {"worker1": {"host": "127.0.0.1", "port": 2201}},
    "cloudrepo:ssh": {"user": "root", "privateKeyPath": "key", "knownHostsPath": "known_hosts"},
}


@pytest.fixture(scope="module")
def checkout(engine: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A project with the slice `s1` (two VMs, no link yet) in a file backend of its own."""
    root = tmp_path_factory.mktemp("cli-fuzz")
    project = make_project(root / "project")
    backend = root / "state"
    stack = PulumiCLI(project_dir=project, backend_dir=backend, stack=SLICE)
    stack.init()
    path = stackfile.stack_file(project, SLICE)
    section = {
        "vlanPool": {"start": 300},
        "vms": [
            {"id": 1, "worker": "worker1", "dataInterfaces": 1},
            {"id": 2, "worker": "worker1", "dataInterfaces": 1},
        ],
        "links": [],
    }
    stackfile.write(path, {**stackfile.read(path), "config": {**CLOUD, stackfile.SLICE_KEY: section}})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PULUMI_BACKEND_URL", f"file://{backend}")
        mp.setenv("PULUMI_CONFIG_PASSPHRASE", LAB_PASSPHRASE)
        yield project


NAMES = st.one_of(
    st.just(SLICE),
    st.from_regex(cli.STACK_NAME, fullmatch=True).map(lambda s: s[:40]),
    hostile_text(),
)
CALLS = st.one_of(
    st.tuples(st.just("show"), NAMES),
    st.tuples(st.just("list")),
    st.tuples(st.just("preview"), NAMES.filter(lambda n: n != SLICE)),
    st.tuples(st.just("destroy"), NAMES.filter(lambda n: n != SLICE), st.just("--yes")),
    st.tuples(
        st.just("vm"),
        st.just("add"),
        NAMES,
        st.just("--id"),
        hostile_text(),
        st.just("--worker"),
        hostile_text(),
    ),
    st.tuples(st.just("link"), st.just("add"), NAMES, hostile_text(), hostile_text()),
    st.tuples(st.just("slice"), st.just("create"), NAMES, st.just("--pool"), hostile_text()),
    st.tuples(st.just("snapshot"), st.sampled_from(["save", "restore", "delete"]), NAMES, hostile_text()),
    st.tuples(st.just("snapshot"), st.just("list"), NAMES),
)


@given(call=CALLS)
@settings(
    max_examples=150 if LONG else 12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
def test_any_call_on_the_real_engine_is_an_answer(checkout: Path, call: tuple[str, ...]) -> None:
    before = {p.name: p.read_bytes() for p in checkout.iterdir() if p.is_file()}
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(["--project", str(checkout), *call])
        except SystemExit as exc:  # argparse
            code = exc.code if isinstance(exc.code, int) else 2
    note(f"{call}: {code}\n{out.getvalue()}\n{err.getvalue()}")
    assert code in (0, 1, 2)
    assert "Traceback" not in out.getvalue() + err.getvalue()
    assert (out.getvalue() if code == 0 else err.getvalue()).strip(), "no message"
    after = {p.name: p.read_bytes() for p in checkout.iterdir() if p.is_file()}
    if code != 0:
        assert after == before, "a refused call changed the checkout"
    elif call[0] == "slice" and stackfile.stack_file(checkout, call[2]).exists():  # not `slice create --help`
        cli.main(["--project", str(checkout), "destroy", call[2], "--yes", "--rm"])
