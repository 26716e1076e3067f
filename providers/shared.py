"""The users registry of objects that slices share (VLAN 400's gateway, DHCP and NAT), kept under the lock.

`/var/lib/cloudrepo/shared/<object>/users/<owner mark>`: one empty file per slice using the object, named
by its owner mark (`<slice>+<uid>`, so a slice of the same name with another uid never removes it). The last
user's delete removes the object; every change to a registry runs inside `flock /var/lib/cloudrepo/lock`.
An entry named by the bare slice (made before slices had uids) is renamed by the slice's next ensure.
"""

from __future__ import annotations

from collections.abc import Iterable

from transport.script import Step, guard, sh
from vocabulary import naming
from vocabulary.specs import HostSpec

_REGISTER = 'mkdir -p "$1" && : > "$1/$2"'
_UNREGISTER = 'rm -f "$1/$2"'
_LAST = '[ -z "$(ls -A "$1" 2>/dev/null)" ]'


def users_dir(obj: str) -> str:
    return naming.shared_users_dir(obj)


def register(obj: str, slice_name: str) -> Step:
    return sh("register user", _REGISTER, users_dir(obj), slice_name)


def unregister(obj: str, slice_name: str) -> Step:
    return sh("unregister user", _UNREGISTER, users_dir(obj), slice_name)


def join(obj: str, spec: HostSpec, users: Iterable[str]) -> list[Step]:
    """Register the slice's owner mark unless it is; drop the bare-name entry of the slice it adopts."""
    have = set(users)
    steps = [] if spec.owner in have else [register(obj, spec.owner)]
    if spec.uid is not None and spec.slice in have:
        steps.append(sh("adopt user entry", _UNREGISTER, users_dir(obj), spec.slice))
    return steps


def joined(spec: HostSpec, users: Iterable[str]) -> tuple[str, ...]:
    """The registry once `join` ran."""
    adopted = {spec.slice} if spec.uid is not None else set()
    return tuple(sorted(({*users} - adopted) | {spec.owner}))


def leave(obj: str, spec: HostSpec) -> Step:
    """Drop the slice's own entry (its owner mark; never another uid's)."""
    return unregister(obj, spec.owner)


def last_user_guard(obj: str) -> Step:
    """Ends the script (successfully) while other slices still use the object."""
    return guard("no other users", "sh", "-c", _LAST, "sh", users_dir(obj))


def forget(obj: str) -> Step:
    """After the last user removed the object: drop its (empty) registry."""
    body = 'for d in "$@"; do if [ -d "$d" ]; then rmdir "$d" || exit 1; fi; done'
    return sh("forget registry", body, users_dir(obj), naming.shared_dir(obj))


def users_probe(obj: str) -> Step:
    return sh("users", '[ -d "$1" ] || exit 0; ls -1A "$1"', users_dir(obj), kind="probe")


def parse_users(text: str) -> list[str]:
    return sorted(line for line in text.splitlines() if line)
