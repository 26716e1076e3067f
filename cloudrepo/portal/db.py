"""The portal's database: its tables (SQLAlchemy), the default URL and an opened session factory.

The schema is made and upgraded by the migrations (`migrate.upgrade`), never by `create_all`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Boolean, DateTime, ForeignKey, Integer, String, Text, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

STATE_DIR = ".cloudrepo"
"""The project's state directory (beside the stack files; also holds guests' known_hosts)."""
DB_FILE = "portal.db"
ROLES = ("admin", "teacher", "student")


def now() -> datetime:
    return datetime.now(UTC)


def default_url(project: Path) -> str:
    """A SQLite file in the project's state directory (made, for its owner alone)."""
    state = project / STATE_DIR
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    return f"sqlite:///{state / DB_FILE}"


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(255))
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


class Group(Base):
    """A teacher's group of students: the teacher sees their slices."""

    __tablename__ = "groups"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    teacher_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))


class Member(Base):
    __tablename__ = "group_members"
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)


class Quota(Base):
    """A user's limits over all their slices together."""

    __tablename__ = "quotas"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    vms: Mapped[int] = mapped_column(Integer)
    vcpus: Mapped[int] = mapped_column(Integer)
    memory_mb: Mapped[int] = mapped_column(Integer)
    links: Mapped[int] = mapped_column(Integer)
    slices: Mapped[int] = mapped_column(Integer)


class Token(Base):
    """A bearer token of the REST API: only its SHA-256 is kept."""

    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


class SliceOwner(Base):
    """Who owns a slice made through the portal (the slice itself is its stack and stack file)."""

    __tablename__ = "slices"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


class Audit(Base):
    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now, index=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    slice: Mapped[str | None] = mapped_column(String(100), nullable=True)
    result: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text, default="")


class JobRow(Base):
    """A run of the engine on a slice (`up`, `preview`): kept so that a reloaded page or another server
    process shows it, and follows it while it runs."""

    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slice: Mapped[str] = mapped_column(String(100), index=True)
    verb: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(64))
    runner: Mapped[str] = mapped_column(String(300))
    """`HOST:PID` of the server process that runs it (a job whose process is gone never ends)."""
    started: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    ended: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    done: Mapped[bool] = mapped_column(Boolean, default=False)
    ok: Mapped[bool] = mapped_column(Boolean, default=False)


class JobLine(Base):
    """One engine line of a job, in the order it came (`id`)."""

    __tablename__ = "job_lines"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    line: Mapped[str] = mapped_column(Text)


class LoginFailure(Base):
    """A failed login, by user name and by address (`ratelimit`)."""

    __tablename__ = "login_failures"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


def engine_for(url: str) -> Engine:
    sqlite = url.startswith("sqlite")
    engine = create_engine(
        url, pool_pre_ping=True, connect_args={"check_same_thread": False} if sqlite else {}
    )
    if sqlite:

        @event.listens_for(engine, "connect")
        def _foreign_keys(conn, _record):
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=5000")

    return engine


def sessions(url: str) -> sessionmaker:
    return sessionmaker(engine_for(url), expire_on_commit=False)


def aware(t: datetime) -> datetime:
    """A stored time as UTC (SQLite gives back naive datetimes)."""
    return t if t.tzinfo else t.replace(tzinfo=UTC)
