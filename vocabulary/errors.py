"""Typed errors of the SSH layer and the providers; each message names the host (and step)."""

from __future__ import annotations

import re
from collections.abc import Iterable

import pulumi

from vocabulary import naming
from vocabulary.shown import KEY_SHOWN, looks_like_key

_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")


def without_key_text(problem: str) -> str:
    """`problem` with every quoted value that looks like key text replaced; when key text is left outside
    quotes, only the key path before the first ': ' is kept."""
    if not looks_like_key(problem):
        return problem
    cut = _QUOTED.sub(lambda m: KEY_SHOWN if looks_like_key(m.group()) else m.group(), problem)
    if looks_like_key(cut):
        head = cut.split(": ", 1)[0]
        return f"{'(a config key)' if looks_like_key(head) else head}: {KEY_SHOWN}"
    return cut


class CloudrepoError(Exception):
    """Base of every error the providers raise on purpose."""


class ConfigError(CloudrepoError, pulumi.RunError, ValueError):
    """The stack config has problems; `problems` lists each one, the message lists them all.

    A `pulumi.RunError`, so `pulumi preview` prints the message alone, without a Python traceback. Raised by
    the program (every problem of the config at once) and by the providers (their SSH settings). Whatever
    module words a problem, key text quoted in it never reaches the message (`without_key_text`).
    """

    def __init__(self, problems: Iterable[str] | str) -> None:
        listed = [problems] if isinstance(problems, str) else list(problems)
        self.problems = [without_key_text(p) for p in listed]
        if isinstance(problems, str):
            super().__init__(self.problems[0])
            return
        n = len(self.problems)
        head = f"cloudrepo: {n} problem{'s' if n != 1 else ''} in the stack config (nothing was changed):"
        super().__init__("\n".join([head, *(f"  - {p}" for p in self.problems)]))


class SshError(CloudrepoError):
    """Something went wrong talking to a host."""

    def __init__(self, host: str, message: str) -> None:
        super().__init__(f"{host}: {message}")
        self.host = host


class HostUnreachable(SshError):
    """The host could not be reached (or authenticated to) after the bounded retries."""


class HostKeyError(SshError):
    """The host presented a key that is unknown to, or different from, the configured known_hosts."""


class CommandTimeout(SshError):
    """A remote script ran past its deadline (the channel is closed)."""

    def __init__(self, host: str, step: str, seconds: float) -> None:
        super().__init__(host, f"step {step!r} still running after {seconds:g}s (timed out)")
        self.step = step
        self.seconds = seconds


class LockTimeout(SshError):
    """A locked script waited too long for the host's lock (another slice's operation held it)."""

    def __init__(self, host: str, lock_file: str, seconds: int, holder: str | None) -> None:
        who = f"slice {holder!r}" if holder else "an unknown holder"
        super().__init__(
            host, f"waited {seconds} s for the lock {lock_file} (last taken by {who}); nothing was run"
        )
        self.lock_file = lock_file
        self.holder = holder


class StepFailed(SshError):
    """A step of a remote script exited non-zero; the script stopped there."""

    def __init__(self, host: str, step: str, status: int, stderr: str) -> None:
        detail = stderr.strip() or "(no stderr)"
        super().__init__(host, f"step {step!r} failed with exit status {status}: {detail}")
        self.step = step
        self.status = status
        self.stderr = stderr
        self.fresh = False
        """Set by a create that found its object absent: what the script made before the step is undone."""


class OwnershipConflict(CloudrepoError):
    """An object this slice wants already belongs to another slice (or is unmarked); nothing was changed."""

    def __init__(self, host: str, obj: str, wanted_by: str, owner: str | None, detail: str = "") -> None:
        held = naming.describe_mark(owner) if owner else "no slice (unmarked)"
        extra = f" ({detail})" if detail else ""
        super().__init__(
            f"{host}: {obj} is wanted by {naming.describe_mark(wanted_by)} but belongs to {held}{extra}; "
            "nothing changed"
        )
        self.host = host
        self.obj = obj
        self.wanted_by = wanted_by
        self.owner = owner


class Conflict(CloudrepoError):
    """The host's state makes the request impossible (e.g. the subnet is on another interface)."""

    def __init__(self, host: str, message: str) -> None:
        super().__init__(f"{host}: {message}")
        self.host = host
