"""One POSIX sh script per operation: steps run in order; the first failing step stops it and is reported.

This is the only place argv lists become shell text (`shlex.join`).  A step is one of:
- `run`: must exit 0, else the script stops and `StepFailed` names the step, its status and its stderr;
- `probe`: a read; its stdout (and status) are returned, any status is fine;
- `guard`: a condition; exit 0 continues, non-zero ends the script successfully (the rest is skipped).

A step's `stdin` (text, optional) reaches its command through a here-document inside the script, so what
it holds is in no process's argv (the script itself goes to the host on the SSH channel's stdin: `runner`).
The here-document carries the text base64-encoded (`base64 -d` feeds the command): dash, Debian's `sh`,
mangles a line that starts like the delimiter and goes on with a byte above 0x7f (`@\xc2\x80` came out as
`@\x80`), and base64 lines are plain ASCII that never start with `@`.
"""

from __future__ import annotations

import base64
import re
import secrets
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from vocabulary.errors import SshError, StepFailed

StepKind = Literal["run", "probe", "guard"]

_NAME = re.compile(r"^[A-Za-z0-9 _.:/=,@+-]{1,80}$")


@dataclass(frozen=True)
class Step:
    """One command of a script: a name for messages, an argv list, and how its status counts."""

    name: str
    argv: tuple[str, ...]
    kind: StepKind = "run"
    stdin: str | None = field(default=None, repr=False)
    """Text the command reads on its standard input (else /dev/null); kept out of argv and reprs."""

    def __init__(
        self, name: str, argv: Sequence[str], kind: StepKind = "run", stdin: str | None = None
    ) -> None:
        if not _NAME.fullmatch(name):
            raise ValueError(f"step name {name!r} has characters a report cannot carry")
        if not argv:
            raise ValueError(f"step {name!r} has an empty argv")
        if stdin is not None and not stdin.endswith("\n") and stdin:
            raise ValueError(f"step {name!r}: its stdin must end with a line break")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "argv", tuple(str(a) for a in argv))
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "stdin", stdin)


def run(name: str, *argv: str) -> Step:
    return Step(name, argv, "run")


def probe(name: str, *argv: str) -> Step:
    return Step(name, argv, "probe")


def guard(name: str, *argv: str) -> Step:
    return Step(name, argv, "guard")


def sh(name: str, body: str, *args: str, kind: StepKind = "run", stdin: str | None = None) -> Step:
    """A step running a constant sh program `body` with `args` as $1.. (never interpolated into it)."""
    return Step(name, ["sh", "-c", body, "sh", *args], kind, stdin)


def _command(step: Step, nonce: str, i: int) -> str:
    """The script line of `step`: its argv with stdin from /dev/null, or fed by `base64 -d` from a quoted
    here-document (no expansion) whose delimiter carries the script's random nonce."""
    line = f'{shlex.join(step.argv)} 2>"$E"'
    if step.stdin is None:
        return f"{line} </dev/null"
    encoded = base64.encodebytes(step.stdin.encode()).decode()
    return f"base64 -d <<'@@{nonce}:stdin:{i}' | {line}\n{encoded}@@{nonce}:stdin:{i}"


@dataclass(frozen=True)
class StepResult:
    name: str
    status: int
    stdout: str


@dataclass
class ScriptResult:
    """What came back: each step that ran (in order) and whether a guard ended the script early."""

    steps: list[StepResult] = field(default_factory=list)
    stopped_by: str | None = None
    lock_wait: float = 0.0
    """Seconds a locked script waited for the host's lock before it began (0 for an unlocked one)."""

    def out(self, name: str) -> str:
        """The stdout of the step called `name` (KeyError if it did not run)."""
        for s in self.steps:
            if s.name == name:
                return s.stdout
        raise KeyError(name)

    def status(self, name: str) -> int:
        for s in self.steps:
            if s.name == name:
                return s.status
        raise KeyError(name)

    def ran(self, name: str) -> bool:
        return any(s.name == name for s in self.steps)


def render(steps: Sequence[Step], nonce: str | None = None, stamps: bool = False) -> str:
    """The sh text of `steps`.  Each step's output sits between marker lines carrying a random nonce.

    `stamps` (profiling only: two `date` runs more): the script's start and end on the host's clock, in ns,
    as a line `@@<nonce>:t:<start> <end>` printed on exit (`host_span` reads it)."""
    n = nonce or secrets.token_hex(8)
    trap = 'rm -f "$E"'
    if stamps:
        trap += f'; printf "@@{n}:t:%s %s\\n" "$T0" "$(date +%s%N)"'
    lines = [
        "set -u",
        # a client that vanishes mid-script (an engine killed) must not leave a change half made (a TAP
        # made but not yet marked): the script runs to its end; its output then goes nowhere
        "trap '' HUP PIPE",
        # what a script makes is its user's alone; where others must read (dnsmasq its reservations), the
        # step sets the mode
        "umask 077",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin; export PATH",
        *(["T0=$(date +%s%N)"] if stamps else []),
        "LC_ALL=C; export LC_ALL",
        "E=$(mktemp) || exit 125",
        f"trap '{trap}' EXIT",
    ]
    for i, step in enumerate(steps):
        lines.append(f"# {i}: {step.name}")
        lines.append(f"printf '%s\\n' '@@{n}:begin:{i}'")
        lines.append(_command(step, n, i))
        lines.append("s=$?")
        lines.append(f"printf '\\n%s%s\\n' '@@{n}:end:{i}:' \"$s\"")
        if step.kind == "run":
            lines.append('if [ "$s" -ne 0 ]; then cat "$E" >&2; exit 100; fi')
        elif step.kind == "guard":
            lines.append(f"if [ \"$s\" -ne 0 ]; then printf '%s\\n' '@@{n}:stop:{i}'; exit 0; fi")
    lines.append(f"printf '%s\\n' '@@{n}:done'")
    return "\n".join(lines) + "\n"


def parse(
    host: str, steps: Sequence[Step], script_text: str, status: int, stdout: str, stderr: str
) -> ScriptResult:
    """Turn the script's output back into results; raise `StepFailed` for the failed step."""
    m = re.search(r"'@@([0-9a-f]+):begin:", script_text)
    if m is None:
        raise ValueError("not a rendered script")
    n = m.group(1)
    result = ScriptResult()
    pos = 0
    for i, step in enumerate(steps):
        begin = f"@@{n}:begin:{i}\n"
        b = stdout.find(begin, pos)
        if b < 0:
            break
        end_prefix = f"\n@@{n}:end:{i}:"
        e = stdout.find(end_prefix, b + len(begin))
        if e < 0:
            # the step started and never finished: the script died (killed, or the connection dropped)
            raise StepFailed(host, step.name, status if status >= 0 else -1, stderr)
        eol = stdout.find("\n", e + len(end_prefix))
        code = int(stdout[e + len(end_prefix) : eol if eol >= 0 else None])
        body = stdout[b + len(begin) : e]
        result.steps.append(StepResult(step.name, code, body))
        pos = eol + 1 if eol >= 0 else len(stdout)
        if code != 0 and step.kind == "run":
            raise StepFailed(host, step.name, code, stderr)
        if code != 0 and step.kind == "guard":
            result.stopped_by = step.name
            return result
    if f"@@{n}:done\n" not in stdout:
        ran = len(result.steps)
        what = steps[ran].name if ran < len(steps) else "(end)"
        raise SshError(
            host,
            f"script stopped before step {what!r} with exit status {status}: "
            f"{stderr.strip() or '(no stderr)'}",
        )
    return result


def host_span(script_text: str, stdout: str) -> tuple[int, int] | None:
    """(start, end) in ns of a script rendered with `stamps`, from its output; None when absent."""
    m = re.search(r"'@@([0-9a-f]+):begin:", script_text)
    if m is None:
        return None
    t = re.search(rf"@@{m.group(1)}:t:([0-9]+) ([0-9]+)$", stdout, re.MULTILINE)
    return (int(t.group(1)), int(t.group(2))) if t else None


def command_line(argv: Sequence[str], sudo: bool = False) -> str:
    """An argv as one POSIX sh command line that gives back exactly these words (what `ssh` or an SSH
    channel hands to the remote login shell: `cloudrepo ssh`, `exec`, `console`), as root by `sudo -n`
    when `sudo`."""
    return shlex.join(["sudo", "-n", *argv] if sudo else list(argv))


def step_output(script_text: str, stdout: str, i: int) -> str | None:
    """The stdout of step `i` once it ended (whatever came after it), or None when it did not end."""
    m = re.search(r"'@@([0-9a-f]+):begin:", script_text)
    if m is None:
        return None
    t = re.search(rf"@@{m.group(1)}:begin:{i}\n(.*?)\n@@{m.group(1)}:end:{i}:", stdout, re.DOTALL)
    return t.group(1) if t else None
