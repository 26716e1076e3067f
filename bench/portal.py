"""`python -m bench.portal`: the portal's latency against a live `cloudrepo serve` on loopback, on the
testbed's cloud: the slice list (API and page) with 20 slices, and the time from a deploy click (the
`POST /api/slices/NAME/deploy` the page's button sends) to the first engine event on its SSE stream.

The 20 slices are stacks and stack files of a throwaway checkout (made as `cloudrepo slice create` makes
them; owned by one student), one of them with a VM that is deployed, then destroyed through the portal.
Holds the testbed's lock; prints a table and writes `bench/results/portal-<time>.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lab.common import NETWORK_HOST, lab_dir, ssh_port
from lab.exclusive import testbed_lock
from lab.pulumi_cli import LAB_PASSPHRASE, PULUMI_HOME, TOOLCHAIN_BIN, make_project

RESULTS = Path(__file__).resolve().parent / "results"
SLICES = 20
DEPLOYED = "bench-portal-00"
VM = 7701
STUDENT, PASSWORD = "bench", "a bench password"


def log(msg: str) -> None:
    print(f"[bench.portal {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def cloud_config() -> dict[str, Any]:
    lab = lab_dir()
    return {
        "cloudrepo:networkNode": {"host": "127.0.0.1", "port": ssh_port(NETWORK_HOST), "uplink": "ens3"},
        "cloudrepo:workers": {"worker1": {"host": "127.0.0.1", "port": ssh_port("worker1")}},
        "cloudrepo:ssh": {
            "user": "root",
            "privateKeyPath": str(lab / "id_ed25519"),
            "knownHostsPath": str(lab / "known_hosts"),
            "sudo": True,
        },
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def timed(fn: Callable[[], Any], n: int) -> dict[str, float]:
    """Milliseconds of `n` calls: median, 95th percentile, max."""
    seen = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        seen.append((time.perf_counter() - t0) * 1000)
    seen.sort()
    return {
        "median_ms": round(statistics.median(seen), 1),
        "p95_ms": round(seen[max(0, int(len(seen) * 0.95) - 1)], 1),
        "max_ms": round(seen[-1], 1),
        "n": n,
    }


def get(url: str, headers: dict[str, str]) -> bytes:
    req = urllib.request.Request(url, headers=headers)  # noqa: S310 (loopback)
    with urllib.request.urlopen(req, timeout=60) as r:  # noqa: S310
        return bytes(r.read())


def first_event(base: str, headers: dict[str, str]) -> tuple[float, bool]:
    """Seconds from the deploy request to the first `data:` line of its stream, and the run's result."""
    t0 = time.perf_counter()
    req = urllib.request.Request(f"{base}/api/slices/{DEPLOYED}/deploy", method="POST", headers=headers)  # noqa: S310
    with urllib.request.urlopen(req, timeout=60) as r:  # noqa: S310
        events = json.loads(r.read())["events"]
    first = None
    ok = False
    follow = urllib.request.Request(base + events, headers=headers)  # noqa: S310 (loopback)
    with urllib.request.urlopen(follow, timeout=600) as stream:  # noqa: S310
        for raw in stream:
            line = raw.decode().rstrip("\n")
            if first is None and line.startswith("data: "):
                first = time.perf_counter() - t0
            if line == "event: end":
                ok = next(stream).decode().strip() == "data: ok"
                break
    return (first if first is not None else float("nan")), ok


def seed(root: Path, env: dict[str, str], db: str) -> None:
    """The student, their token, and 20 slices of the checkout owned by them (one with a VM)."""
    os.environ.update(env)
    from cloudrepo import stackfile
    from cloudrepo.engine import Slices, apply_environment
    from cloudrepo.portal import accounts, migrate
    from cloudrepo.portal import db as portal_db

    apply_environment()
    migrate.upgrade(db)
    slices = Slices(root / "project")
    sessions = portal_db.sessions(db)
    with sessions() as s, s.begin():
        user = accounts.add_user(s, STUDENT, "student", PASSWORD)
        accounts.set_quota(s, user, accounts.Limits(100, 100, 100_000, 100, 100))
        for i in range(SLICES):
            name = f"bench-portal-{i:02d}"
            vms = [{"id": VM, "worker": "worker1", "dataInterfaces": 0}] if name == DEPLOYED else []
            section = {"vlanPool": {"start": 100 + 20 * i}, "vms": vms, "links": []}
            slices.create(name)
            path = stackfile.stack_file(slices.project, name)
            stackfile.write(
                path, {**stackfile.read(path), "config": {**cloud_config(), "cloudrepo:slice": section}}
            )
            s.add(portal_db.SliceOwner(name=name, owner_id=user.id))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.portal", description=__doc__)
    ap.add_argument("--requests", type=int, default=30, help="requests per latency figure (default 30)")
    args = ap.parse_args(argv)
    subprocess.run([sys.executable, "-m", "lab", "up"], check=True)
    with testbed_lock("bench.portal"), tempfile.TemporaryDirectory(prefix="cloudrepo-bench-portal-") as tmp:
        root = Path(tmp)
        make_project(root / "project")
        env = {
            "PULUMI_BACKEND_URL": f"file://{root / 'backend'}",
            "PULUMI_CONFIG_PASSPHRASE": LAB_PASSPHRASE,
            "PULUMI_HOME": str(PULUMI_HOME),
            "PATH": f"{TOOLCHAIN_BIN}:{os.environ.get('PATH', '')}",
        }
        db = f"sqlite:///{root / 'portal.db'}"
        log(f"seeding {SLICES} slices")
        seed(root, env, db)
        argv_base = [sys.executable, "-m", "cloudrepo", "--project", str(root / "project")]
        token = subprocess.run(
            [*argv_base, "token", "create", STUDENT, "--db", db], env={**os.environ, **env},
            capture_output=True, text=True, check=True,
        ).stdout.strip().splitlines()[-1]  # fmt: skip
        port = free_port()
        server = subprocess.Popen(
            [*argv_base, "serve", "--listen", f"127.0.0.1:{port}", "--db", db], env={**os.environ, **env}
        )
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {token}"}
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    get(f"{base}/healthz", {})
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.3)
            listed = json.loads(get(f"{base}/api/slices", headers))
            assert len(listed) == SLICES, listed
            log("slice list latency")
            api = timed(lambda: get(f"{base}/api/slices", headers), args.requests)
            login = {"name": STUDENT, "password": PASSWORD}
            cookie = session_cookie(base, login)
            page = timed(lambda: get(f"{base}/", {"Cookie": cookie}), args.requests)
            log("deploy click to first event")
            first, ok = first_event(base, headers)
            log(f"deploy {'succeeded' if ok else 'failed'}; destroying it")
            req = urllib.request.Request(f"{base}/api/slices/{DEPLOYED}", method="DELETE", headers=headers)  # noqa: S310
            urllib.request.urlopen(req, timeout=600).read()  # noqa: S310
        finally:
            server.terminate()
            server.wait(timeout=30)
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "slices": SLICES,
        "slice_list_api": api,
        "slice_list_page": page,
        "deploy_click_to_first_event_s": round(first, 2),
        "deploy_ok": ok,
    }
    print(
        f"{'slice list, GET /api/slices (20 slices)':48} median {api['median_ms']} ms  p95 {api['p95_ms']} ms"
    )
    print(f"{'slice list, the page / (20 slices)':48} median {page['median_ms']} ms  p95 {page['p95_ms']} ms")
    print(f"{'deploy click to the first streamed event':48} {result['deploy_click_to_first_event_s']} s")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"portal-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    log(f"wrote {out}")
    return 0 if ok else 1


def session_cookie(base: str, login: dict[str, str]) -> str:
    """Log in through the form (its CSRF cookie first); the session cookie as a Cookie header."""
    import http.cookiejar
    import urllib.parse

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.open(f"{base}/login").read()
    csrf = next(c.value for c in jar if c.name == "cloudrepo_login")
    body = urllib.parse.urlencode({**login, "csrf": csrf}).encode()
    opener.open(f"{base}/login", data=body).read()
    return "; ".join(f"{c.name}={c.value}" for c in jar if c.name == "cloudrepo_session")


if __name__ == "__main__":
    sys.exit(main())
