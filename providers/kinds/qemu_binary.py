"""Where `cloudrepo:qemu.binary` resolves on a worker.

QEMU is run by the absolute path that `command -v` gives for the configured word, and only when that is an
executable regular file: a shell built-in (`eval`), a function or an alias would take the arguments and
parse them again as shell (the kernel command line included), so it is refused before anything starts.
A word with a `/` is never looked up as a built-in, function or alias: the start line runs that path.
"""

from __future__ import annotations

from providers.hoststate import HostNotReady
from transport.script import ScriptResult, Step, sh

STEP = "qemu binary"


class BinaryRefused(HostNotReady):
    """`qemu.binary` is not an executable file on the worker: refused before any change."""


_BINARY = r"""p=$(command -v -- "$1" 2>/dev/null) || p=
case $p in
/*) if [ -f "$p" ] && [ -x "$p" ]; then printf 'path=%s\n' "$p"; exit 0; fi ;;
esac
printf 'found=%s\n' "$(printf '%s' "$p" | tr '\n\037' '  ')"
"""
"""Where `$1` resolves: `path=` an executable regular file, else `found=` what `command -v` said."""


def probe_step(binary: str) -> Step:
    return sh(STEP, _BINARY, binary, kind="probe")


def parse(res: ScriptResult) -> tuple[str | None, str]:
    """(the executable file, what `command -v` said) from the binary probe; (None, "") when it did not run."""
    if not res.ran(STEP):
        return None, ""
    key, _, value = res.out(STEP).rstrip("\n").partition("=")
    return (value, value) if key == "path" and value.startswith("/") else (None, value.strip())


def require(host: str, binary: str, path: str | None, found: str) -> str:
    """`path` (the executable file); `BinaryRefused`, naming the value and what was found, without one."""
    if path is not None:
        return path
    what = (
        "command -v finds nothing"
        if not found
        else f"it is {found!r}, not an executable regular file"
        if found.startswith("/")
        else f"command -v finds {found!r}: a shell built-in, function or alias, not a file"
    )
    raise BinaryRefused(
        f"{host}: cloudrepo:qemu.binary {binary!r} is not an executable file on the worker ({what}); "
        "nothing was started"
    )
