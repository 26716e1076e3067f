"""One script per operation: quoting of hostile strings, stop at the first failure, probes and guards.

The rendered script is run by a local `sh -s`, exactly as the remote side runs it (no SSH needed).
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from transport.script import ScriptResult, Step, guard, host_span, parse, probe, render, run, sh
from vocabulary.errors import StepFailed

HOSTILE = [
    "$(touch PWNED)",
    "`touch PWNED`",
    "a'b\"c",
    "x; touch PWNED",
    "line1\nline2",
    "*",
    "--option",
    "back\\slash",
    "@@0123:end:0:0",
]


def execute(steps: Sequence[Step]) -> ScriptResult:
    """Run the script as the runner does; parse what comes back (bytes decoded as `ssh.run_script` does)."""
    text = render(steps)
    proc = subprocess.run(["sh", "-s"], input=text.encode(), capture_output=True, timeout=30)
    out, err = proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
    return parse("testhost", steps, text, proc.returncode, out, err)


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_arguments_arrive_verbatim(hostile: str, tmp_path: Path) -> None:
    value = hostile.replace("PWNED", str(tmp_path / "pwned"))
    res = execute([probe("echo", "printf", "%s", value)])
    assert res.out("echo") == value
    assert list(tmp_path.iterdir()) == []


def test_sh_steps_take_arguments_positionally_never_in_the_program() -> None:
    res = execute([sh("positional", 'printf "%s|%s" "$1" "$2"', "$(id)", "a b", kind="probe")])
    assert res.out("positional") == "$(id)|a b"


def test_first_failing_step_stops_the_script_and_is_named(tmp_path: Path) -> None:
    steps = [
        run("first", "true"),
        run("second", "sh", "-c", "echo partial; echo 'boom: no such port' >&2; exit 3"),
        run("third", "touch", str(tmp_path / "never")),
    ]
    with pytest.raises(StepFailed) as err:
        execute(steps)
    assert err.value.step == "second"
    assert err.value.status == 3
    assert err.value.host == "testhost"
    assert "boom: no such port" in err.value.stderr
    assert str(err.value) == "testhost: step 'second' failed with exit status 3: boom: no such port"
    assert list(tmp_path.iterdir()) == []


def test_stderr_of_earlier_steps_does_not_leak_into_the_failure() -> None:
    steps = [run("noisy", "sh", "-c", "echo warning >&2"), run("fails", "sh", "-c", "echo real >&2; exit 1")]
    with pytest.raises(StepFailed) as err:
        execute(steps)
    assert err.value.stderr.strip() == "real"


def test_probes_return_output_and_status_and_never_stop() -> None:
    res = execute([probe("a", "sh", "-c", "printf 'x\\n\\ny'; exit 4"), probe("b", "printf", "")])
    assert (res.out("a"), res.status("a")) == ("x\n\ny", 4)
    assert (res.out("b"), res.status("b")) == ("", 0)
    assert res.stopped_by is None


def test_guard_ends_the_script_successfully() -> None:
    res = execute([run("one", "true"), guard("others remain", "false"), run("never", "false")])
    assert res.stopped_by == "others remain"
    assert not res.ran("never")


def test_steps_do_not_read_the_script_from_stdin() -> None:
    # `cat` would swallow the rest of the script if steps inherited stdin
    res = execute([probe("cat", "cat"), probe("after", "echo", "still here")])
    assert res.out("cat") == "" and res.out("after") == "still here\n"


WORD_CHARS = st.characters(codec="utf-8", exclude_characters="\x00")
"""Any character an argv word can hold (not NUL; valid UTF-8)."""


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.text(WORD_CHARS, max_size=20),
        min_size=1,
        max_size=4,
    )
)
def test_any_argv_reaches_the_command_as_it_was(argv: list[str]) -> None:
    """Whatever the words (quotes, `$(...)`, newlines, our own markers), the command gets them unchanged."""
    res = execute([probe("args", "printf", "%s\\0", *argv), probe("after", "echo", "ok")])
    assert res.out("args").split("\0")[:-1] == argv
    assert res.out("after") == "ok\n"


def test_step_names_are_restricted() -> None:
    with pytest.raises(ValueError, match="characters a report cannot carry"):
        Step("bad\nname", ["true"])
    with pytest.raises(ValueError, match="empty argv"):
        Step("empty", [])


@pytest.mark.parametrize(
    "steps", [[probe("a", "echo", "x")], [guard("g", "false"), run("b", "true")]], ids=["done", "guard"]
)
def test_stamps_give_the_hosts_start_and_end_and_change_nothing_else(steps: list[Step]) -> None:
    import time

    plain = render(steps, nonce="ab12")
    text = render(steps, nonce="ab12", stamps=True)
    assert "date" not in plain and ":t:" not in plain
    before = time.time_ns()
    proc = subprocess.run(["sh", "-s"], input=text.encode(), capture_output=True, timeout=30)
    out = proc.stdout.decode()
    span = host_span(text, out)
    assert span is not None and before <= span[0] <= span[1] <= time.time_ns()
    stamped = parse("testhost", steps, text, proc.returncode, out, proc.stderr.decode())
    proc = subprocess.run(["sh", "-s"], input=plain.encode(), capture_output=True, timeout=30)
    assert stamped == parse("testhost", steps, plain, proc.returncode, proc.stdout.decode(), "")


def test_stamps_survive_a_failing_step() -> None:
    text = render([run("f", "false")], stamps=True)
    proc = subprocess.run(["sh", "-s"], input=text.encode(), capture_output=True, timeout=30)
    assert proc.returncode == 100 and host_span(text, proc.stdout.decode()) is not None


stdin_texts = st.lists(
    st.text(st.characters(codec="utf-8", exclude_characters="\x00\r"), max_size=30), max_size=8
)


@settings(max_examples=80, deadline=None)
@given(stdin_texts, st.sampled_from(HOSTILE))
@example(["@\x80"], HOSTILE[0])  # dash mangled this one in a plain here-document ("@\xc2" after "@@" ends)
@example(["@@", "@@0123456789abcdef:stdin:0"], HOSTILE[0])
def test_stdin_reaches_the_command_verbatim_and_never_its_argv(lines: list[str], hostile: str) -> None:
    text = "".join(f"{line}\n" for line in [*lines, hostile.replace("\n", " ")])
    step = sh("stdin", 'cat; printf "|%s" "$#"', kind="probe", stdin=text)
    assert text not in " ".join(step.argv) and text not in repr(step)
    res = execute([step, probe("after", "printf", "%s", "next")])
    assert res.out("stdin") == f"{text}|0" and res.out("after") == "next"


def test_stdin_must_end_its_last_line_and_its_delimiter_line_is_text() -> None:
    with pytest.raises(ValueError, match="line break"):
        sh("x", "cat", stdin="no newline")
    delimiter = "@@0123456789abcdef:stdin:0\n"
    step = sh("x", "cat", kind="probe", stdin=delimiter)
    script = render([step], nonce="0123456789abcdef")
    assert script.count(delimiter.strip()) == 2  # the here-document's own two: the text went base64-encoded
    assert execute([step]).out("x") == delimiter
