"""The portal's verbs of `cloudrepo`: `serve`, `user add`, `group add`, `quota set`, `token create`.

Each takes `--db URL` (default: a SQLite file in the project's state directory) and brings the schema up
to date first (`migrate.upgrade`). Passwords come from a terminal (asked twice) or, with
`--password-stdin`, from the first line of stdin; never from the command line.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vocabulary.shown import shown

DEFAULT_LISTEN = "127.0.0.1:8080"
KEY_FILE = "portal-session.key"


def listen_address(text: str) -> tuple[str, int]:
    """argparse type of `--listen HOST:PORT`."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{shown(text)} is not HOST:PORT (e.g. {DEFAULT_LISTEN})")
    return host.strip("[]"), int(port)


def shown_url(url: str) -> str:
    """A database URL fit for a message: its password hidden (or nothing of it, when it does not parse)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "(not a database URL)"


def _db_url(args: argparse.Namespace, project: Path) -> str:
    """The database's URL, its schema migrated; `ValueError` naming it (password hidden) when it cannot
    be opened."""
    from sqlalchemy.exc import SQLAlchemyError

    from cloudrepo.portal import db, migrate

    url = args.db or db.default_url(project)
    try:
        migrate.upgrade(url)
    except (SQLAlchemyError, ValueError, OSError) as exc:
        why = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ValueError(
            f"--db {shown_url(url)}: cannot open the portal's database: {type(exc).__name__}"
            + (f": {why.replace(url, shown_url(url))}" if why else "")
        ) from None
    return url


def _password(args: argparse.Namespace, say: Callable[[str], None]) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise ValueError("user add: not a terminal: pass --password-stdin and give the password on stdin")
    first = getpass.getpass(f"Password for {args.user}: ")
    if getpass.getpass("Again: ") != first:
        raise ValueError("user add: the two passwords differ; nothing written")
    return first


def cmd_user_add(args: argparse.Namespace, project: Path, say: Callable[[str], None]) -> int:
    from cloudrepo.portal import accounts, audit, db

    password = _password(args, say)
    sessions = db.sessions(_db_url(args, project))
    with sessions() as s, s.begin():
        try:
            accounts.add_user(s, args.user, args.role, password)
        except accounts.AccountError as exc:
            raise ValueError(f"user add: {exc}; nothing written") from None
        audit.record(s, "(shell)", "user add", None, "ok", f"{args.user} ({args.role})")
    say(f"user {args.user} added ({args.role})")
    return 0


def cmd_group_add(args: argparse.Namespace, project: Path, say: Callable[[str], None]) -> int:
    from cloudrepo.portal import accounts, db

    sessions = db.sessions(_db_url(args, project))
    with sessions() as s, s.begin():
        try:
            group = accounts.add_group(s, accounts.find_user(s, args.teacher), args.group)
            for student in args.students:
                accounts.add_member(s, group, accounts.find_user(s, student))
        except accounts.AccountError as exc:
            raise ValueError(f"group add: {exc}; nothing written") from None
    say(f"group {args.group} of {args.teacher}: {', '.join(args.students) or 'no students yet'}")
    return 0


def cmd_quota_set(args: argparse.Namespace, project: Path, say: Callable[[str], None]) -> int:
    from cloudrepo.portal import accounts, audit, db

    sessions = db.sessions(_db_url(args, project))
    with sessions() as s, s.begin():
        try:
            user = accounts.find_user(s, args.user)
            old = accounts.limits_of(s, user) or accounts.DEFAULT_LIMITS
            wanted = {k: getattr(args, k) for k in old.__dict__ if getattr(args, k) is not None}
            limits = accounts.Limits(**{**old.__dict__, **wanted})
            accounts.set_quota(s, user, limits)
        except accounts.AccountError as exc:
            raise ValueError(f"quota set: {exc}; nothing written") from None
        audit.record(s, "(shell)", "quota set", None, "ok", f"{args.user}: {limits}")
    say(f"quota of {args.user}: " + ", ".join(f"{k} {v}" for k, v in limits.__dict__.items()))
    return 0


def cmd_token_create(args: argparse.Namespace, project: Path, say: Callable[[str], None]) -> int:
    from cloudrepo.portal import accounts, audit, db

    sessions = db.sessions(_db_url(args, project))
    with sessions() as s, s.begin():
        try:
            token = accounts.create_token(s, accounts.find_user(s, args.user))
        except accounts.AccountError as exc:
            raise ValueError(f"token create: {exc}") from None
        audit.record(s, "(shell)", "token create", None, "ok", args.user)
    say(f"a bearer token for {args.user} (shown once; send it as `Authorization: Bearer TOKEN`):")
    say(token)
    return 0


def load_cloud(cloud_file: str | None, launches_file: str | None) -> Any:
    from cloudrepo import stackfile
    from cloudrepo.cli import _cloud_settings
    from cloudrepo.portal.service import Cloud

    plain, secrets = _cloud_settings(Path(cloud_file)) if cloud_file else ({}, {})
    launches: dict[str, Any] = {}
    if launches_file:
        doc = stackfile.load_yaml(Path(launches_file)) or {}
        if not isinstance(doc, dict) or not all(isinstance(v, dict) for v in doc.values()):
            raise ValueError(f"--launches {launches_file}: a YAML object of NAME: {{kernel, initrd, ...}}")
        launches = {str(k): v for k, v in doc.items()}
    return Cloud(plain=plain, secrets=secrets, launches=launches)


def cmd_serve(args: argparse.Namespace, project: Path, say: Callable[[str], None]) -> int:
    import uvicorn

    from cloudrepo.portal import db, sessions
    from cloudrepo.portal.app import create_app
    from cloudrepo.portal.service import Portal

    url = _db_url(args, project)
    cloud = load_cloud(args.cloud, args.launches)
    key = sessions.load_key(project / db.STATE_DIR / KEY_FILE)
    app = create_app(Portal(project, cloud, db.sessions(url)), sessions.Signer(key))
    host, port = args.listen
    shown_host = f"[{host}]" if ":" in host else host
    say(f"cloudrepo portal: http://{shown_host}:{port}/ (database {url.split('://', 1)[0]}; Ctrl-C stops)")
    uvicorn.run(app, host=host, port=port, log_level="warning", proxy_headers=False)
    return 0


def add_verbs(sub: Any, verb: Callable[..., argparse.ArgumentParser], wrap: Callable[[Any], Any]) -> None:
    """The portal's verbs on the `cloudrepo` parser (`wrap` gives each the project and the printer)."""

    def group(name: str, help: str) -> Any:
        return sub.add_parser(name, help=help).add_subparsers(dest="action", required=True)

    def with_db(q: argparse.ArgumentParser) -> argparse.ArgumentParser:
        q.add_argument("--db", metavar="URL", help="the portal's database (default: SQLite in .cloudrepo/)")
        return q

    q = with_db(verb(sub, "serve", wrap(cmd_serve), "the web portal: accounts, slices, deploys, consoles"))
    q.add_argument(
        "--listen",
        type=listen_address,
        default=listen_address(DEFAULT_LISTEN),
        metavar="HOST:PORT",
        help=f"where it listens (default {DEFAULT_LISTEN})",
    )
    q.add_argument("--cloud", help="the cloud's hosts, SSH settings and secrets: a stack config file")
    q.add_argument("--launches", help="YAML: the boot presets users pick (NAME: a VM's launch)")
    q = with_db(verb(group("user", "the portal's accounts"), "add", wrap(cmd_user_add), "add a user"))
    q.add_argument("user", metavar="NAME")
    q.add_argument("--role", required=True, choices=("admin", "teacher", "student"))
    q.add_argument("--password-stdin", action="store_true", help="read the password from stdin's first line")
    q = with_db(verb(group("group", "a teacher's groups"), "add", wrap(cmd_group_add), "a teacher's group"))
    q.add_argument("group", metavar="GROUP")
    q.add_argument("--teacher", required=True)
    q.add_argument("students", nargs="*", metavar="STUDENT")
    q = with_db(verb(group("quota", "users' quotas"), "set", wrap(cmd_quota_set), "set a user's quota"))
    q.add_argument("user", metavar="NAME")
    for flag in ("vms", "vcpus", "memory-mb", "links", "slices"):
        q.add_argument(f"--{flag}", dest=flag.replace("-", "_"), type=int, metavar="N")
    q = with_db(
        verb(
            group("token", "bearer tokens of the REST API"),
            "create",
            wrap(cmd_token_create),
            "a new token for NAME (printed on the last line)",
        )
    )
    q.add_argument("user", metavar="NAME")
