"""The users registry of objects that slices share (VLAN 400's gateway, DHCP and NAT), kept under the lock.

`/var/lib/cloudrepo/shared/<object>/users/<slice>`: one empty file per slice using the object.  The last
user's delete removes the object; every change to a registry runs inside `flock /var/lib/cloudrepo/lock`.
"""

from __future__ import annotations

from . import naming
from .script import Step, guard, sh

_REGISTER = 'mkdir -p "$1" && : > "$1/$2"'
_UNREGISTER = 'rm -f "$1/$2"'
_LAST = '[ -z "$(ls -A "$1" 2>/dev/null)" ]'


def users_dir(obj: str) -> str:
    return naming.shared_users_dir(obj)


def register(obj: str, slice_name: str) -> Step:
    return sh("register user", _REGISTER, users_dir(obj), slice_name)


def unregister(obj: str, slice_name: str) -> Step:
    return sh("unregister user", _UNREGISTER, users_dir(obj), slice_name)


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
