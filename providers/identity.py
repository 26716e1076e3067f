"""SliceIdentity: the slice's uid, made once by the stack's first `up` and kept in its state.

The uid, with the slice name, is the owner mark of every object of the slice (`naming.owner_mark`) and is
recorded in its pool claim on the network node: a second stack whose slice has the same name has another
uid, so it is refused at its claim and can neither adopt nor remove the first one's objects. It lives in
the state as this resource's output (not in the stack outputs, which a failed `up` does not write), so a
first `up` that failed after claiming is retried as the same owner. Nothing changes it: no input, no diff,
a refresh keeps it, and it goes only with the stack's last resources (everything else depends on it).

Not a host kind (no host, no pipeline). Every slice's state refers to
`providers.identity.SliceIdentityProvider` by this module path (docs/design.md, "Upgrades and the state's
module paths"): it must not move.
"""

from __future__ import annotations

import secrets
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, ResourceProvider


def new_uid() -> str:
    """A fresh uid: 128 random bits in hex (`vocabulary.naming.SAFE_UID`)."""
    return secrets.token_hex(16)


class SliceIdentityProvider(ResourceProvider):
    """Makes the uid at create; never changes it (no host, no SSH)."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        uid = new_uid()
        return CreateResult(uid, {"uid": uid})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        return DiffResult(changes=False, replaces=[], stables=["uid"], delete_before_replace=False)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_, {"uid": props.get("uid") or id_})

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Nothing on any host: the uid goes with the state."""


class SliceIdentity(pulumi.dynamic.Resource, name="SliceIdentity"):
    """The slice's uid (output `uid`), made by the first `up` and kept in the state."""

    uid: pulumi.Output[str]

    def __init__(self, resource_name: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(SliceIdentityProvider(), resource_name, {"uid": None}, opts)
