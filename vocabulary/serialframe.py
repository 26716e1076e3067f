"""A command typed at a guest's shell on its serial console, framed so that its output and status can be
read back (pure). `lab.console` (the local socket) and `cloudrepo.checkrun` (over SSH to the worker) both
type it.

The line prints a begin and an end marker around the command, each carrying a random nonce; the format's
arguments are typed as separate words, so the terminal's echo of the typed line never looks like them.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

INTERRUPT = b"\x03\n"
"""Typed first: a Ctrl-C and an empty line end whatever an earlier, abandoned command left."""


def line(argv: Sequence[str], nonce: str) -> str:
    """The line typed: `argv` (stdin from /dev/null, stderr with stdout) between the markers."""
    return (
        f"printf '@@%s:%s\\n' B {nonce}; {shlex.join(argv)} </dev/null 2>&1; "
        f"printf '@@%s:%s:%s\\n' E {nonce} $?\n"
    )


def answer(buf: str, nonce: str) -> tuple[int, str] | None:
    """The command's exit status and output once `buf` (the console's text, CRs removed) holds both
    markers, else None."""
    begin = f"@@B:{nonce}\n"
    m = re.search(rf"@@E:{re.escape(nonce)}:(\d+)\n", buf)
    if m is None or begin not in buf[: m.start()]:
        return None
    return int(m.group(1)), buf[buf.index(begin) + len(begin) : m.start()]
