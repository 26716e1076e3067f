"""The framing of a command typed at a guest's serial console: the answer is found only between the
shell's own markers, never in the terminal's echo of the typed line, whatever the command's words."""

from __future__ import annotations

import shlex
import subprocess

from hypothesis import given
from hypothesis import strategies as st

from vocabulary import serialframe

NONCE = "0123456789abcdef"
words = st.lists(
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=12), min_size=1, max_size=4
)


@given(words)
def test_the_echo_of_the_typed_line_is_no_answer(argv: list[str]) -> None:
    typed = serialframe.line(argv, NONCE)
    assert serialframe.answer(typed.replace("\r", ""), NONCE) is None
    assert typed.endswith("\n") and typed.count("\n") == 1 and shlex.join(argv) in typed


@given(words, st.integers(0, 255), st.text(st.characters(codec="utf-8"), max_size=40))
def test_the_answer_between_the_markers(argv: list[str], status: int, output: str) -> None:
    echo = serialframe.line(argv, NONCE)
    screen = f"{echo}@@B:{NONCE}\n{output}@@E:{NONCE}:{status}\n# "
    assert serialframe.answer(screen, NONCE) == (status, output)
    assert serialframe.answer(screen, "f" * 16) is None  # another command's nonce


def test_a_real_shell_runs_the_line() -> None:
    typed = serialframe.line(["sh", "-c", 'echo "it\'s"; exit 3'], NONCE)
    done = subprocess.run(["sh"], input=typed, capture_output=True, text=True, timeout=10, check=False)
    assert serialframe.answer(done.stdout, NONCE) == (3, "it's\n")
