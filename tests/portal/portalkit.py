"""A portal on the real engine (a file backend and a project of the test's own) and a real database,
with its users: an admin, a teacher, the teacher's student `ann` and another student `bob`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cloudrepo.engine import apply_environment
from cloudrepo.portal import accounts, db, migrate, sessions
from cloudrepo.portal.app import create_app
from cloudrepo.portal.service import Cloud, Portal
from lab.pulumi_cli import LAB_PASSPHRASE, make_project

PASSWORD = "a long password"
WORKERS = ("worker1", "worker2")
CLOUD = {
    "cloudrepo:networkNode": {"host": "127.0.0.1", "port": 22, "uplink": "ens3"},
    "cloudrepo:workers": {w: {"host": "127.0.0.1", "port": 22} for w in WORKERS},
    "cloudrepo:ssh": {"user": "root", "knownHostsPath": "/dev/null", "sudo": True},
}
"""Cloud settings the checks accept; nothing in these tests logs into a host."""
USERS = {"root1": "admin", "tess": "teacher", "ann": "student", "bob": "student"}


@dataclass
class World:
    project: Path
    portal: Portal
    client: TestClient
    tokens: dict[str, str] = field(default_factory=dict)
    cookies: dict[str, tuple[str, str]] = field(default_factory=dict)
    """user -> (session cookie, its CSRF token)."""

    def bearer(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    def browser(self, user: str) -> TestClient:
        """A client with `user`'s session cookie (and no token)."""
        c = TestClient(self.client.app, follow_redirects=False)
        c.cookies.set(sessions.COOKIE, self.cookies[user][0])
        return c

    def csrf(self, user: str) -> str:
        return self.cookies[user][1]

    def stack_file(self, name: str) -> Path:
        return self.project / f"Pulumi.{name}.yaml"

    def api(self, user: str, method: str, path: str, **kw: Any) -> Any:
        return self.client.request(method, path, headers=self.bearer(user), **kw)


@contextmanager
def engine_env(root: Path) -> Iterator[None]:
    """The engine on a file backend under `root`, with the testbed's passphrase."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PULUMI_BACKEND_URL", f"file://{root / 'backend'}")
        mp.setenv("PULUMI_CONFIG_PASSPHRASE", LAB_PASSPHRASE)
        before = os.environ.get("PATH", "")
        apply_environment()
        try:
            yield
        finally:
            os.environ["PATH"] = before


def make_world(root: Path, url: str, cloud: Cloud | None = None) -> World:
    migrate.upgrade(url)
    database = db.sessions(url)
    project = make_project(root / "project")
    signer = sessions.Signer(b"test-key" * 4)
    portal = Portal(
        project, cloud or Cloud(plain=dict(CLOUD), secrets={"cloudrepo:sshPrivateKey": "k"}), database
    )
    world = World(project, portal, TestClient(create_app(portal, signer), follow_redirects=False))
    with database() as s, s.begin():
        made = {name: accounts.add_user(s, name, role, PASSWORD) for name, role in USERS.items()}
        accounts.add_member(s, accounts.add_group(s, made["tess"], "class-a"), made["ann"])
        for name, user in made.items():
            world.tokens[name] = accounts.create_token(s, user)
            cookie, session = signer.issue(user.id)
            world.cookies[name] = (cookie, session.csrf)
    return world
