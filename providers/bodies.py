"""Shell steps more than one resource runs: iptables rules added or removed idempotently, a file written
atomically, and the owner mark of an object.  Each body is a constant sh program; every variable part is a
positional argument (`script.sh`), never spliced into the text."""

from __future__ import annotations

from collections.abc import Sequence

from transport.script import Step, sh
from vocabulary import naming

_ADD_RULE = (
    't=$1; c=$2; w=$3; shift 3; iptables -w -t "$t" -C "$c" "$@" 2>/dev/null || '
    'if [ "$w" = first ]; then iptables -w -t "$t" -I "$c" 1 "$@"; else iptables -w -t "$t" -A "$c" "$@"; fi'
)
_REMOVE_RULE = (
    "t=$1; c=$2; shift 2; "
    'while iptables -w -t "$t" -C "$c" "$@" 2>/dev/null; do iptables -w -t "$t" -D "$c" "$@"; done'
)
_WRITE_FILE = 'mkdir -p "$(dirname "$1")" && printf "%s" "$2" >"$1.tmp" && mv -f "$1.tmp" "$1"'


def add_rule(name: str, table: str, chain: str, rule: Sequence[str], *, first: bool = False) -> Step:
    """Add the rule unless it is there (`iptables -C`): appended, or inserted first with `first`."""
    return sh(name, _ADD_RULE, table, chain, "first" if first else "last", *rule)


def remove_rule(name: str, table: str, chain: str, rule: Sequence[str]) -> Step:
    """Remove every copy of the rule; none there is fine."""
    return sh(name, _REMOVE_RULE, table, chain, *rule)


def write_file(name: str, path: str, text: str) -> Step:
    """Write `text` to `path` atomically (a temporary file renamed over it), making its directory."""
    return sh(name, _WRITE_FILE, path, text)


def owner_mark(shared: bool, owner: str) -> str:
    """What marks an object as its owner's: the slice's mark (`naming.owner_mark`), or `shared` for the
    objects slices share."""
    return naming.SHARED_OWNER if shared else owner
