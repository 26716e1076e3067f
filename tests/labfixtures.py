"""pytest support for the testbed (``python -m lab``).

Fixtures:
- ``lab_session`` (session): the session's hold on its testbed (the test suite's own, `lab.testenv`):
  ``hold()`` takes its lock for the rest of the session, ``ensure_up()``, ``owned`` (True when this session
  brought it up: it then takes it down at the end, even after failures).
- ``testbed`` (session): the testbed, up and held. Reuses one that is already up (and leaves it up); stops
  the run when it holds a slice; skips with a reason when not root or tools are missing.
- ``guest`` (function): factory ``guest(name, host=..., tap=..., iface="eth1", mac=None)``; every guest it
  started is stopped at teardown.
Helpers: ``scan(host=None)``, ``assert_scan_equal(baseline, now)``, ``lab_cli(*args)``,
``held_host_lock(host)`` (a barrier: the host's lock held, so every locked host script waits).
"""

from __future__ import annotations

import difflib
import fcntl
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from lab import PROJECT_ROOT, owners
from lab.common import host_paths, lab_dir
from lab.exclusive import testbed_lock
from lab.testbed import read_inventory

ROOT = PROJECT_ROOT

DEFAULT_WORKERS = int(os.environ.get("CLOUDREPO_LAB_WORKERS", "2"))


def lab_cli(*args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run ``python -m lab ARGS`` from the project root."""
    proc = subprocess.run(
        [sys.executable, "-m", "lab", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"python -m lab {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


@contextmanager
def held_host_lock(host: str) -> Iterator[None]:
    """Hold a testbed host's lock (the file every locked host script takes with `flock`) while inside: a
    barrier that keeps an engine at its first change on that host, without racing a clock."""
    path = host_paths(host).state / "lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def scan(host: str | None = None) -> dict[str, Any]:
    """The testbed's scan (``python -m lab scan [HOST]``) as a dict."""
    args = ["scan"] + ([host] if host else [])
    return json.loads(lab_cli(*args).stdout)


def flatten_scan(doc: Any, path: str = "") -> set[str]:
    """A scan as a set of ``path = value`` leaves (lists of objects become one leaf per item)."""
    leaves: set[str] = set()
    if isinstance(doc, dict):
        if not doc:
            leaves.add(f"{path} = {{}}")
        for key, value in doc.items():
            leaves |= flatten_scan(value, f"{path}/{key}")
    elif isinstance(doc, list):
        if not doc:
            leaves.add(f"{path} = []")
        for item in doc:
            leaves.add(f"{path}[] = {json.dumps(item, sort_keys=True)}")
    else:
        leaves.add(f"{path} = {json.dumps(doc)}")
    return leaves


def scan_diff(baseline: dict[str, Any], now: dict[str, Any], only: Iterable[str] | None = None) -> list[str]:
    """Leaves removed (``-``) and added (``+``); with ``only``, just those whose text names one of them."""
    a, b = flatten_scan(baseline), flatten_scan(now)
    lines = [f"- {leaf}" for leaf in a - b] + [f"+ {leaf}" for leaf in b - a]
    if only is not None:
        names = list(only)
        lines = [line for line in lines if any(name in line for name in names)]
    return sorted(lines, key=lambda line: (line[2:], line[0]))


def mask_uids(doc: Any) -> Any:
    """A scan with every slice uid in an owner mark (`<slice>+<uid>`) replaced by `UID`: two stacks of one
    slice config (two uids) then scan alike."""
    return json.loads(re.sub(r"\+[0-9a-f]{32}\b", "+UID", json.dumps(doc)))


def scan_parts(node: Any, markers: tuple[str, ...]) -> Any:
    """The parts of a scan that mention one of `markers` (in a key or in a value)."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if any(m in str(k) for m in markers):
                out[k] = v
            else:
                sub = scan_parts(v, markers)
                if sub not in (None, {}, []):
                    out[k] = sub
        return out
    if isinstance(node, list):
        return [item for item in node if any(m in json.dumps(item) for m in markers)]
    return node if any(m in str(node) for m in markers) else None


def assert_scan_equal(
    baseline: dict[str, Any], now: dict[str, Any], only: Iterable[str] | None = None
) -> None:
    """Fail with a readable diff when the scans differ.

    Without ``only`` the whole scans must be equal (a unified diff of the JSON is shown). With ``only``
    (object names, addresses, keys such as ``ip_forward``), differences that name none of them are
    ignored: what other users of a shared testbed do at the same time does not count.
    """
    if only is None:
        if baseline == now:
            return
        a = json.dumps(baseline, indent=2, sort_keys=True).splitlines()
        b = json.dumps(now, indent=2, sort_keys=True).splitlines()
        diff = "\n".join(difflib.unified_diff(a, b, "baseline", "now", lineterm="", n=4))
        pytest.fail(f"scan changed:\n{diff}", pytrace=False)
    lines = scan_diff(baseline, now, only)
    if lines:
        pytest.fail("scan changed:\n" + "\n".join(lines), pytrace=False)


def skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "the testbed needs root"
    from lab.testbed import missing_tools

    missing = missing_tools()
    if missing:
        return "testbed tools missing: " + ", ".join(missing)
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun is missing"
    return None


@dataclass
class Testbed:
    """An up testbed: its inventory, SSH to its hosts, scans."""

    __test__ = False

    inventory: dict[str, Any]

    @property
    def workers(self) -> list[str]:
        return list(self.inventory["workers"])

    @property
    def internet(self) -> dict[str, Any]:
        return dict(self.inventory["internet"])

    def port(self, host: str) -> int:
        return int(self.inventory["hosts"][host]["port"])

    def ssh(self, host: str) -> Any:
        """A paramiko client to HOST (root, the lab key, known_hosts verified, RejectPolicy)."""
        import paramiko

        client = paramiko.SSHClient()
        client.load_host_keys(self.inventory["knownHostsPath"])
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect(
            "127.0.0.1",
            port=self.port(host),
            username="root",
            key_filename=self.inventory["privateKeyPath"],
            look_for_keys=False,
            allow_agent=False,
            timeout=10,
        )
        return client

    def run(
        self, host: str, command: str, *, check: bool = True, timeout: float = 60
    ) -> tuple[int, str, str]:
        """Run a shell command on HOST over SSH; returns (exit code, stdout, stderr)."""
        client = self.ssh(host)
        try:
            _, stdout, stderr = client.exec_command(command, timeout=timeout)
            out = stdout.read().decode()
            err = stderr.read().decode()
            rc = stdout.channel.recv_exit_status()
        finally:
            client.close()
        if check and rc != 0:
            raise AssertionError(f"{host}: `{command}` failed ({rc}):\n{out}\n{err}")
        return rc, out, err

    def scan(self, host: str | None = None) -> dict[str, Any]:
        return scan(host)

    def ssh_config(self) -> dict[str, str]:
        """The stack config the SSH layer reads (`cloudrepo:ssh` as the engine passes it: a JSON string)."""
        raw = {
            "user": "root",
            "privateKeyPath": self.inventory["privateKeyPath"],
            "knownHostsPath": self.inventory["knownHostsPath"],
            "sudo": True,
        }
        return {"cloudrepo:ssh": json.dumps(raw)}


@dataclass
class LabSession:
    """This pytest session's hold on its testbed (`lab.testenv`: never the demo's).

    The session holds the testbed's lock (`lab.exclusive`) from its first use to its end, so no other test
    run or benchmark uses it meanwhile; it takes the testbed down at the end when it brought it up. A
    testbed that holds a slice this run did not make stops the run, naming the slice.
    """

    skip: str | None = None
    owned: bool = False
    checked: bool = False
    locks: ExitStack = field(default_factory=ExitStack)
    held: bool = False

    def hold(self) -> None:
        """Take the testbed's lock for the rest of the session (waits for the current holder)."""
        if not self.held:
            self.locks.enter_context(testbed_lock(f"pytest {' '.join(sys.argv[1:]) or 'tests'}"))
            self.held = True

    def is_up(self) -> bool:
        return lab_cli("status", check=False).returncode == 0

    def ensure_up(self, workers: int = DEFAULT_WORKERS) -> Testbed:
        if self.skip:
            pytest.skip(self.skip)
        self.hold()
        inventory = read_inventory() if self.is_up() else None
        if inventory is None or len(inventory["workers"]) < workers:
            lab_cli("up", "--workers", str(workers), timeout=300)
            self.owned = True
            inventory = read_inventory()
            assert inventory is not None, f"`python -m lab up` wrote no inventory in {lab_dir()}"
        if not self.checked:
            stop_on_foreign_slices(inventory)
            self.checked = True
        return Testbed(inventory)

    def close(self) -> None:
        try:
            if self.owned:
                lab_cli("down", check=False)
        finally:
            self.locks.close()
            self.held = False


def stop_on_foreign_slices(inventory: dict[str, Any]) -> None:
    """Stop the run when the testbed holds a slice: this run has made none yet (it has just begun)."""
    found = owners.slices(scan(), inventory)
    if found:
        where = "; ".join(
            f"{name} ({', '.join(objs[:3])}{', ...' if len(objs) > 3 else ''})"
            for name, objs in sorted(found.items())
        )
        pytest.exit(
            f"the testbed in {lab_dir()} holds slices this test run did not make: {where}. Destroy their "
            "stacks, or take the testbed down (`python -m lab down` with the same CLOUDREPO_LAB_* settings).",
            returncode=3,
        )


@pytest.fixture(scope="session")
def lab_session() -> Iterator[LabSession]:
    session = LabSession(skip=skip_reason())
    try:
        yield session
    finally:
        session.close()


@pytest.fixture(scope="session")
def testbed(lab_session: LabSession) -> Testbed:
    return lab_session.ensure_up()


@dataclass
class Guest:
    """A guest started by the ``guest`` fixture."""

    name: str

    def add_iface(self, host: str, tap: str, iface: str, mac: str | None = None) -> None:
        args = ["vm", "start", self.name, "--host", host, "--tap", tap, "--iface", iface]
        lab_cli(*args + (["--mac", mac] if mac else []))

    def dhcp(self, iface: str = "eth1", timeout: int = 20) -> str:
        return lab_cli("vm", "dhcp", self.name, "--iface", iface, "--timeout", str(timeout)).stdout.strip()

    def exec(
        self, *command: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return lab_cli("vm", "exec", self.name, "--", *command, check=check, timeout=timeout)


@pytest.fixture
def guest(testbed: Testbed) -> Iterator[Any]:
    started: list[str] = []

    def start(name: str, *, host: str, tap: str, iface: str = "eth1", mac: str | None = None) -> Guest:
        g = Guest(name)
        started.append(name)
        g.add_iface(host, tap, iface, mac)
        return g

    yield start
    for name in reversed(started):
        lab_cli("vm", "stop", name, check=False)
