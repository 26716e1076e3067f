"""Users, roles, groups, bearer tokens and quotas: the portal's accounts, in its database.

Passwords are hashed with argon2 (salted, memory-hard); tokens are random and only their SHA-256 is kept.
There is no default account: the first admin comes from `cloudrepo user add NAME --role admin`.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloudrepo.portal.db import ROLES, Group, Member, Quota, SliceOwner, Token, User

USER_NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
MIN_PASSWORD = 8
TOKEN_PREFIX = "crp_"  # noqa: S105  (a prefix, not a secret)
_hasher = PasswordHasher()


class AccountError(ValueError):
    """An account operation that cannot be done; the message says why."""


@dataclass(frozen=True)
class Limits:
    """A quota's numbers (over all of a user's slices)."""

    vms: int
    vcpus: int
    memory_mb: int
    links: int
    slices: int


DEFAULT_LIMITS = Limits(vms=4, vcpus=4, memory_mb=2048, links=8, slices=2)
"""The quota of a user who has none set (`cloudrepo quota set` changes it); admins have none."""


def user_name(text: str) -> str:
    if not USER_NAME.fullmatch(text):
        raise AccountError(
            f"{text!r} is not a user name: 1..64 lowercase letters, digits, '_', '.', '-', "
            "starting with a letter"
        )
    return text


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"the password is too short: {MIN_PASSWORD} characters at least")
    return _hasher.hash(password)


def password_ok(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


_DUMMY = _hasher.hash("not a password of anyone")


def authenticate(db: Session, name: str, password: str) -> User | None:
    """The user when the password is theirs; an unknown name costs the same hash check."""
    user = db.scalar(select(User).where(User.name == name))
    if user is None:
        password_ok(_DUMMY, password)
        return None
    return user if password_ok(user.password_hash, password) else None


def add_user(db: Session, name: str, role: str, password: str) -> User:
    user_name(name)
    if role not in ROLES:
        raise AccountError(f"{role!r} is not a role: one of {', '.join(ROLES)}")
    if db.scalar(select(User).where(User.name == name)) is not None:
        raise AccountError(f"user {name!r} exists already")
    user = User(name=name, role=role, password_hash=hash_password(password))
    db.add(user)
    db.flush()
    return user


def find_user(db: Session, name: str) -> User:
    user = db.scalar(select(User).where(User.name == name))
    if user is None:
        raise AccountError(f"no user {name!r}")
    return user


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(db: Session, user: User) -> str:
    """A new bearer token of `user` (shown once; only its digest is kept)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    db.add(Token(user_id=user.id, digest=token_digest(token)))
    db.flush()
    return token


def token_user(db: Session, token: str) -> User | None:
    row = db.scalar(select(Token).where(Token.digest == token_digest(token)))
    return db.get(User, row.user_id) if row is not None else None


def set_quota(db: Session, user: User, limits: Limits) -> None:
    for field, value in limits.__dict__.items():
        if value < 0:
            raise AccountError(f"quota {field} must be 0 or more, got {value}")
    row = db.get(Quota, user.id)
    if row is None:
        db.add(Quota(user_id=user.id, **limits.__dict__))
    else:
        for field, value in limits.__dict__.items():
            setattr(row, field, value)
    db.flush()


def limits_of(db: Session, user: User) -> Limits | None:
    """The user's quota (None: not limited, an admin)."""
    if user.role == "admin":
        return None
    row = db.get(Quota, user.id)
    if row is None:
        return DEFAULT_LIMITS
    return Limits(row.vms, row.vcpus, row.memory_mb, row.links, row.slices)


def add_group(db: Session, teacher: User, name: str) -> Group:
    if teacher.role not in ("teacher", "admin"):
        raise AccountError(f"{teacher.name} is a {teacher.role}: only teachers and admins make groups")
    user_name(name)
    if db.scalar(select(Group).where(Group.name == name)) is not None:
        raise AccountError(f"group {name!r} exists already")
    group = Group(name=name, teacher_id=teacher.id)
    db.add(group)
    db.flush()
    return group


def find_group(db: Session, name: str) -> Group:
    group = db.scalar(select(Group).where(Group.name == name))
    if group is None:
        raise AccountError(f"no group {name!r}")
    return group


def groups_of(db: Session, user: User) -> list[dict[str, object]]:
    """The groups `user` teaches (every group for an admin), with their students' names."""
    q = select(Group).order_by(Group.name)
    if user.role != "admin":
        q = q.where(Group.teacher_id == user.id)
    out: list[dict[str, object]] = []
    for g in db.scalars(q):
        teacher = db.get(User, g.teacher_id)
        students = db.scalars(
            select(User.name)
            .join(Member, Member.user_id == User.id)
            .where(Member.group_id == g.id)
            .order_by(User.name)
        ).all()
        out.append({"name": g.name, "teacher": teacher.name if teacher else None, "students": list(students)})
    return out


def add_member(db: Session, group: Group, student: User) -> None:
    if student.role != "student":
        raise AccountError(f"{student.name} is a {student.role}, not a student")
    if db.get(Member, (group.id, student.id)) is None:
        db.add(Member(group_id=group.id, user_id=student.id))
        db.flush()


def may_see(db: Session, user: User, owner_id: int) -> bool:
    """Whether `user` may see and act on a slice owned by `owner_id`: admins every slice, teachers those of
    the students in their groups and their own, students their own."""
    if user.role == "admin" or user.id == owner_id:
        return True
    if user.role != "teacher":
        return False
    found = db.scalar(
        select(Member.user_id)
        .join(Group, Group.id == Member.group_id)
        .where(Group.teacher_id == user.id, Member.user_id == owner_id)
    )
    return found is not None


def owner_of(db: Session, slice_name: str) -> User | None:
    row = db.get(SliceOwner, slice_name)
    return db.get(User, row.owner_id) if row is not None else None
