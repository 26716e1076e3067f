"""Open vSwitch changes of the scripts running at once on one host, committed together (a group commit).

Every OVSDB transaction makes each `ovs-vswitchd` pass over its whole bridge, and on a full node it also
refreshes the status of every interface (see `docs/design.md`, "A full network node"): the cost of a change
grows with the ports already there. A script's change to a port goes through `step`: it is queued in the
host's spool, and the script that holds the spool's lock commits every queued change in ONE `ovs-vsctl`
transaction, while the changes queued meanwhile wait for the next one. A joint transaction that fails is
not retried as such: each of its changes is then committed alone, so each script gets its own status and
error, exactly as if it had run `ovs-vsctl` itself.

A committer killed midway leaves its changes queued, and the next one commits them again (every change is
idempotent: `--may-exist`, `--if-exists`, `set`); a script killed while it waits leaves its files in the
spool (`c.*`, a few bytes), which nothing reads again.

A change is one `ovs-vsctl` command group list (`--`-separated, without the program and its options) and a
mode: `wait` (return once `ovs-vswitchd` applied it) or `no-wait` (once OVSDB holds it); a joint
transaction waits when any of its changes does.
"""

from __future__ import annotations

from collections.abc import Sequence

from transport.script import Step, sh
from vocabulary import naming

SPOOL = f"{naming.STATE_ROOT}/ovs-batch"
"""The host's queue of changes (root's alone) and the lock whose holder commits them."""
TOOLS = ("ovs-vsctl", "flock", "mktemp")
"""What the commit runs on the host."""

_COMMIT = r"""
d=$1; mode=$2; shift 2
[ -d "$d" ] || mkdir -p -m 700 "$d" || exit 1
r=$(mktemp "$d/c.XXXXXXXXXX") || exit 1
# a change: its mode, then one argument per line; renamed into the queue once whole
{ printf '%s\n' "$mode"; printf '%s\n' "$@"; } > "$r.new" && mv "$r.new" "$r.req" || exit 1
exec 9>>"$d/lock"
until [ -e "$r.rc" ]; do
  flock 9 || exit 1
  [ -e "$r.rc" ] && break
  # this script commits: every change queued by now, its own among them, in one transaction
  set --; w=--no-wait; q=
  for c in "$d"/c.*.req; do
    q="$q ${c%.req}"
    { read -r m; [ "$m" = wait ] && w=; set -- "$@" --
      while IFS= read -r a; do set -- "$@" "$a"; done; } < "$c"
  done
  if ovs-vsctl $w "$@" 2>/dev/null; then
    for c in $q; do echo 0 > "$c.rc"; done
  else
    for c in $q; do
      set --; w=--no-wait
      { read -r m; [ "$m" = wait ] && w=; while IFS= read -r a; do set -- "$@" "$a"; done; } < "$c.req"
      ovs-vsctl $w "$@" 2>"$c.err"; echo $? > "$c.rc"
    done
  fi
  set --; for c in $q; do set -- "$@" "$c.req"; done; rm -f -- "$@"
done
exec 9>&-
read -r s < "$r.rc"; [ -s "$r.err" ] && cat "$r.err" >&2
rm -f "$r" "$r.rc" "$r.err"
exit "$s"
"""


def step(name: str, commands: Sequence[str], *, wait: bool = True) -> Step:
    """The step that commits `commands` (an `ovs-vsctl` argument list, no options) with the other scripts'
    changes queued at the same time on the host."""
    if not commands or {"--no-wait", "--wait"} & set(commands):
        raise ValueError(f"{name}: an ovs-vsctl command list, its mode apart: {list(commands)!r}")
    if any("\n" in c for c in commands):
        raise ValueError(f"{name}: an argument of an ovs-vsctl change holds a line break")
    return sh(name, _COMMIT, SPOOL, "wait" if wait else "no-wait", *commands)


def alone(step: Step) -> list[str] | None:
    """The `ovs-vsctl` command line a batched change amounts to when no other change is queued with it (what
    a failed joint transaction falls back to); None for any other step."""
    if step.argv[:3] != ("sh", "-c", _COMMIT):
        return None
    mode, commands = step.argv[5], step.argv[6:]
    return ["ovs-vsctl", *(["--no-wait"] if mode == "no-wait" else []), *commands]
