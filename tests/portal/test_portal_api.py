"""The portal's API and pages on the real engine (stack files, a file backend) and a real database, once
on SQLite and once on PostgreSQL: who may do what (every route of the app, every role), CSRF, quotas,
the VLAN pool, names and VM ids held by other slices, every problem of a bad slice at once."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.websockets import WebSocketDisconnect

from cloudrepo.images import size_text
from cloudrepo.portal import accounts, service, sessions
from cloudrepo.portal.app import create_app, route_table
from cloudrepo.portal.service import Portal
from tests.portal.portalkit import PASSWORD, World, engine_env, make_world

SLICE = "ann-s"
ANN_SLICE = {
    "name": SLICE,
    "vms": [
        {"id": 1, "worker": "worker1", "dataInterfaces": 1},
        {"id": 2, "worker": "worker2", "dataInterfaces": 1},
    ],
    "links": [["1.eth1", "2.eth1"]],
}


@pytest.fixture(scope="module")
def world(engine_built: None, db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("portal")
    with engine_env(root):
        w = make_world(root, db_url)
        made = w.api("ann", "POST", "/api/slices", json=ANN_SLICE)
        assert made.status_code == 201, made.text
        job = service.Job(id=999, slice=SLICE, verb="preview", lines=["a line"], done=True, ok=True)
        w.portal.jobs[job.id] = job  # a finished run of ann's slice, for the job routes
        yield w


# ---- every route, every role -------------------------------------------------------------------------

# route -> who may use it: "public", "user" (anyone logged in), "slice" (those allowed on the slice: its
# owner, the owner's teacher, admins), "teacher" (teachers and admins), "admin". A route of the app missing
# here fails the test below.
ROUTES: dict[tuple[str, str], str] = {
    ("GET", "/openapi.json"): "public",
    ("GET", "/healthz"): "public",
    ("GET", "/login"): "public",
    ("POST", "/login"): "public",
    ("GET", "/api/me"): "user",
    ("GET", "/api/slices"): "user",
    ("POST", "/api/slices"): "user",
    ("GET", "/api/audit"): "user",
    ("GET", "/api/slices/{name}"): "slice",
    ("DELETE", "/api/slices/{name}"): "slice",
    ("POST", "/api/slices/{name}/deploy"): "slice",
    ("POST", "/api/slices/{name}/preview"): "slice",
    ("GET", "/api/jobs/{job_id}"): "slice",
    ("GET", "/api/jobs/{job_id}/events"): "slice",
    ("POST", "/api/slices/{name}/vms"): "slice",
    ("DELETE", "/api/slices/{name}/vms/{vm}"): "slice",
    ("POST", "/api/slices/{name}/links"): "slice",
    ("DELETE", "/api/slices/{name}/links"): "slice",
    ("POST", "/api/slices/{name}/topology"): "slice",
    ("GET", "/api/slices/{name}/export"): "slice",
    ("PUT", "/api/slices/{name}/config"): "slice",
    ("GET", "/api/slices/{name}/status"): "slice",
    ("GET", "/api/slices/{name}/diagram.svg"): "slice",
    ("WS", "/api/slices/{name}/vms/{vm}/console"): "slice",
    ("GET", "/api/groups"): "user",
    ("POST", "/api/groups"): "teacher",
    ("POST", "/api/groups/{group}/members"): "teacher",
    ("GET", "/api/users"): "admin",
    ("POST", "/api/users"): "admin",
    ("PUT", "/api/users/{user}/quota"): "admin",
    ("POST", "/logout"): "user",
    ("GET", "/"): "user",
    ("POST", "/slices"): "user",
    ("POST", "/slices/import"): "user",
    ("GET", "/slices/{name}"): "slice",
    ("POST", "/slices/{name}/vms"): "slice",
    ("POST", "/slices/{name}/vms/{vm}/rm"): "slice",
    ("POST", "/slices/{name}/links"): "slice",
    ("POST", "/slices/{name}/links/rm"): "slice",
    ("POST", "/slices/{name}/topology"): "slice",
    ("POST", "/slices/{name}/destroy"): "slice",
    ("GET", "/slices/{name}/console/{vm}"): "slice",
    ("GET", "/groups"): "teacher",
    ("POST", "/groups"): "teacher",
    ("POST", "/groups/{group}/members"): "teacher",
    ("GET", "/admin/users"): "admin",
    ("POST", "/admin/users"): "admin",
    ("POST", "/admin/quotas"): "admin",
    ("GET", "/admin/audit"): "admin",
    ("GET", "/admin/images"): "admin",
    ("POST", "/admin/images"): "admin",
    ("POST", "/admin/images/{image}/rm"): "admin",
    ("GET", "/api/images"): "admin",
    ("POST", "/api/images"): "admin",
    ("DELETE", "/api/images/{name}"): "admin",
    ("POST", "/slices/{name}/config"): "slice",
}
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/api/slices"): {"json": {"name": "", "vms": []}},
    ("POST", "/api/slices/{name}/vms"): {"json": {"id": 9, "worker": "worker1"}},
    ("POST", "/api/slices/{name}/links"): {"json": {"a": "1.eth1", "b": "2.eth1"}},
    ("DELETE", "/api/slices/{name}/links"): {"json": {"a": "1.eth1", "b": "2.eth1"}},
    ("POST", "/api/slices/{name}/topology"): {"json": {"preset": "ring", "vms": [1, 2, 3]}},
    ("PUT", "/api/slices/{name}/config"): {"json": {"vms": []}},
    ("POST", "/api/users"): {"json": {"name": "x", "role": "student", "password": "short"}},
    ("POST", "/api/groups"): {"json": {"name": "Bad Name"}},
    ("POST", "/api/groups/{group}/members"): {"json": {"name": "bob"}},
    ("PUT", "/api/users/{user}/quota"): {
        "json": {"vms": -1, "vcpus": 1, "memory_mb": 1, "links": 1, "slices": 1}
    },
    ("POST", "/slices"): {"data": {"name": ""}},
    ("POST", "/slices/import"): {"data": {"name": "", "yaml": "[1"}},
    ("POST", "/slices/{name}/vms"): {"data": {"id": "9", "worker": "worker1"}},
    ("POST", "/slices/{name}/links"): {"data": {"a": "1.eth1", "b": "2.eth1"}},
    ("POST", "/slices/{name}/links/rm"): {"data": {"a": "1.eth1", "b": "2.eth1"}},
    ("POST", "/slices/{name}/topology"): {"data": {"preset": "ring", "vms": "1 2 3"}},
    ("POST", "/admin/users"): {"data": {"name": "x", "role": "student", "password": "short"}},
    ("POST", "/groups"): {"data": {"name": "Bad Name"}},
    ("POST", "/groups/{group}/members"): {"data": {"name": "bob"}},
    ("POST", "/admin/quotas"): {
        "data": {"name": "nobody", "vms": 1, "vcpus": 1, "memory_mb": 1, "links": 1, "slices": 1}
    },
    ("POST", "/api/images"): {"json": {"name": "x", "path": "/etc/passwd"}},
    ("POST", "/admin/images"): {"data": {"name": "x", "path": "/etc/passwd"}},
    ("POST", "/slices/{name}/config"): {"data": {"yaml": "vms: [1"}},
}
ROLES = ("anonymous", "bob", "ann", "tess", "root1")
"""bob: a student not allowed on ann's slice; tess: ann's teacher; root1: an admin."""


def test_every_route_of_the_app_is_in_the_table(world: World) -> None:
    found = route_table(world.client.app)  # type: ignore[arg-type]
    assert found == set(ROUTES), (sorted(found - set(ROUTES)), sorted(set(ROUTES) - found))


def _url(path: str) -> str:
    return path.format(name=SLICE, vm=1, job_id=999, user="ann", group="class-a", image="no-such")


def expected_refusal(access: str, role: str, api: bool) -> int | None:
    """The status the role must get (None: it passes authorization)."""
    if access == "public":
        return None
    if role == "anonymous":
        return 401 if api else 303
    if access == "admin" and role != "root1":
        return 403
    if access == "teacher" and role not in ("tess", "root1"):
        return 403
    if access == "slice" and role == "bob":
        return 403
    return None


MUTATING = {"POST", "PUT", "DELETE"}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("route", sorted(ROUTES), ids=lambda r: f"{r[0]} {r[1]}")
def test_authorization(world: World, route: tuple[str, str], role: str) -> None:
    method, path = route
    access = ROUTES[route]
    api = path.startswith("/api/")
    want = expected_refusal(access, role, api)
    if method == "WS":
        return check_console_socket(world, role, want)
    if want is None and (method in MUTATING or access == "public"):
        return  # what passes is proven by the scenario tests (a deploy or a destroy is not run here)
    before = world.stack_file(SLICE).read_bytes()
    kw = dict(BODIES.get(route, {}))
    if role == "anonymous":
        client = world.client
        result = client.request(method, _url(path), **kw)
    elif api:
        result = world.client.request(method, _url(path), headers=world.bearer(role), **kw)
    else:
        if "data" in kw or method in MUTATING:
            kw["data"] = {**kw.get("data", {}), "csrf": world.csrf(role)}
        result = world.browser(role).request(method, _url(path), **kw)
    if want is None:
        assert result.status_code not in (401, 403), (route, role, result.text)
        assert result.status_code < 500, (route, role, result.text)
    else:
        assert result.status_code == want, (route, role, result.status_code, result.text)
        if want == 303:
            assert result.headers["location"] == "/login"
    assert world.stack_file(SLICE).read_bytes() == before, "a refused request changed the slice"


def check_console_socket(world: World, role: str, want: int | None) -> None:
    url = _url("/api/slices/{name}/vms/{vm}/console")
    client = world.browser(role) if role != "anonymous" else world.client
    if want is None:
        return  # the browser test attaches for real
    with pytest.raises(WebSocketDisconnect) as exc, client.websocket_connect(url):
        pass
    assert exc.value.code == {401: 4401, 303: 4401, 403: 4403}[want]


# ---- the scenarios --------------------------------------------------------------------------------


def test_slices_are_listed_for_those_allowed_only(world: World) -> None:
    for user, sees in (("ann", True), ("tess", True), ("root1", True), ("bob", False)):
        names = [s["name"] for s in world.api(user, "GET", "/api/slices").json()]
        assert (SLICE in names) == sees, (user, names)
    got = world.api("tess", "GET", f"/api/slices/{SLICE}").json()
    assert got["owner"] == "ann" and got["config"]["vlanPool"] == {"start": 1}
    assert world.api("bob", "GET", f"/api/slices/{SLICE}").status_code == 403
    assert world.browser("bob").get(f"/slices/{SLICE}").status_code == 403
    assert world.browser("bob").get("/admin/users").status_code == 403
    assert world.client.get("/api/slices").status_code == 401


def test_a_bad_slice_gets_422_with_every_problem(world: World) -> None:
    bad = {
        "name": "bad one",
        "vlanPool": {"start": 100},
        "vms": [
            {"id": 1, "worker": "worker9"},
            {"id": 5, "worker": "worker1", "launch": {"kernel": "/etc/passwd"}},
        ],
        "links": [["5.eth0", "x"]],
        "colour": "red",
    }
    result = world.api("bob", "POST", "/api/slices", json=bad)
    assert result.status_code == 422, result.text
    problems = result.json()["detail"]
    for part in (
        "name: 'bad one' is not a slice name",
        "colour: not a key of a slice section",
        "vlanPool: only an admin pins",
        "vms[0].id: VM 1 is held by another slice; the next free id is 3",
        "vms[1].launch: kernel not allowed",
        "unknown worker 'worker9'",
        "eth0 is the management interface",
    ):
        assert any(part in p for p in problems), (part, problems)
    assert not any(re.search(r"\bann\b", p) for p in problems), "a student is told another student's name"


def test_held_names_and_ids_name_the_owner_to_admins_only(world: World) -> None:
    body = {"name": SLICE, "vms": [{"id": 2, "worker": "worker1"}]}
    as_bob = world.api("bob", "POST", "/api/slices", json=body).json()["detail"]
    as_admin = world.api("root1", "POST", "/api/slices", json=body).json()["detail"]
    assert f"name: slice {SLICE!r} exists already" in as_bob
    assert not any(re.search(r"\bann\b", p.replace(SLICE, "")) for p in as_bob), as_bob
    assert f"name: slice {SLICE!r} exists already (owned by ann)" in as_admin
    ids = {"name": "other", "vms": [{"id": 2, "worker": "worker1"}]}
    as_admin = world.api("root1", "POST", "/api/slices", json=ids).json()["detail"]
    assert any(f"VM 2 is held by slice {SLICE!r} of ann; the next free id is 3" in p for p in as_admin), (
        as_admin
    )
    as_bob = world.api("bob", "POST", "/api/slices", json=ids).json()["detail"]
    assert "vms[0].id: VM 2 is held by another slice; the next free id is 3" in as_bob
    assert not world.stack_file("other").exists()


def test_the_portal_allocates_pools_and_only_an_admin_pins_one(world: World) -> None:
    made = world.api("root1", "POST", "/api/slices", json={"name": "root-s", "vlanPool": {"start": 600}})
    assert made.status_code == 201, made.text
    try:
        assert made.json()["config"]["vlanPool"] == {"start": 600}
        clash = world.api("root1", "POST", "/api/slices", json={"name": "clash", "vlanPool": {"start": 265}})
        assert any("meets another slice's VLANs or subnets" in p for p in clash.json()["detail"])
        assert not world.stack_file("clash").exists()
    finally:
        assert world.api("root1", "DELETE", "/api/slices/root-s").status_code == 200
    assert not world.stack_file("root-s").exists() and not world.portal.slices.exists("root-s")


def test_a_quota_overrun_is_refused_with_nothing_written(world: World) -> None:
    quota = {"vms": 2, "vcpus": 4, "memory_mb": 1024, "links": 4, "slices": 1}
    assert world.api("root1", "PUT", "/api/users/ann/quota", json=quota).status_code == 200
    try:
        before = world.stack_file(SLICE).read_bytes()
        more = world.api("ann", "POST", f"/api/slices/{SLICE}/vms", json={"id": 3, "worker": "worker1"})
        assert more.status_code == 422 and more.json()["detail"] == [
            "quota vms of ann: 3 VMs wanted, 2 allowed"
        ]
        assert world.stack_file(SLICE).read_bytes() == before
        second = world.api(
            "ann", "POST", "/api/slices", json={"name": "ann-2", "vms": [{"id": 7, "worker": "worker1"}]}
        )
        assert second.status_code == 422, second.text
        assert any(p.startswith("quota") and "allowed" in p for p in second.json()["detail"]), second.text
        assert not world.stack_file("ann-2").exists() and not world.portal.slices.exists("ann-2")
    finally:
        unlimited = {"vms": 50, "vcpus": 50, "memory_mb": 50000, "links": 50, "slices": 5}
        world.api("root1", "PUT", "/api/users/ann/quota", json=unlimited)


def test_a_session_without_its_csrf_token_changes_nothing(world: World) -> None:
    browser = world.browser("ann")
    before = world.stack_file(SLICE).read_bytes()
    body = {"id": 4, "worker": "worker2"}
    assert browser.post(f"/api/slices/{SLICE}/vms", json=body).status_code == 403
    wrong = {"X-CSRF-Token": world.csrf("bob")}
    assert browser.post(f"/api/slices/{SLICE}/vms", json=body, headers=wrong).status_code == 403
    page = browser.post(f"/slices/{SLICE}/links", data={"a": "1.eth1", "b": "2.eth1"})
    assert page.status_code == 403 and "CSRF" in page.text
    assert world.stack_file(SLICE).read_bytes() == before
    ok = browser.post(f"/api/slices/{SLICE}/vms", json=body, headers={"X-CSRF-Token": world.csrf("ann")})
    assert ok.status_code == 200, ok.text
    assert world.api("ann", "DELETE", f"/api/slices/{SLICE}/vms/4").status_code == 200
    log = world.api("root1", "GET", "/api/audit").json()
    assert any(e["actor"] == "ann" and e["action"] == "edit" and "VM 4" in e["detail"] for e in log)


def test_export_and_import_keep_the_rules(world: World) -> None:
    text = world.api("ann", "GET", f"/api/slices/{SLICE}/export").text
    section = yaml.safe_load(text)["cloudrepo:slice"]
    assert section["vms"][0]["id"] == 1
    bad = {**section, "links": [["1.eth1", "9.eth1"]]}
    refused = world.api("ann", "PUT", f"/api/slices/{SLICE}/config", json=bad)
    assert refused.status_code == 422 and any("9" in p for p in refused.json()["detail"])
    again = world.api("ann", "PUT", f"/api/slices/{SLICE}/config", json={"cloudrepo:slice": section})
    assert again.status_code == 200 and again.json()["config"] == section


def test_openapi_names_the_slice_routes(world: World) -> None:
    schema = world.client.get("/openapi.json").json()
    assert {"/api/slices", "/api/slices/{name}", "/api/slices/{name}/deploy"} <= set(schema["paths"])


def test_five_wrong_passwords_give_429_with_retry_after(
    engine_built: None, fresh_db_url: str, tmp_path: Path
) -> None:
    with engine_env(tmp_path):
        w = make_world(tmp_path, fresh_db_url)
    c = w.client
    form = c.get("/login")
    token = form.cookies.get("cloudrepo_login") or c.cookies.get("cloudrepo_login")
    codes = [
        c.post("/login", data={"name": "ann", "password": "wrong!", "csrf": token}).status_code
        for _ in range(5)
    ]
    assert codes == [401, 401, 401, 401, 429], codes
    again = c.post("/login", data={"name": "ann", "password": PASSWORD, "csrf": token})
    assert again.status_code == 429 and int(again.headers["retry-after"]) >= 30
    assert c.post("/login", data={"name": "bob", "password": PASSWORD, "csrf": token}).status_code == 429
    assert c.post("/login", data={"name": "bob", "password": PASSWORD}).status_code == 403  # no CSRF token


def test_the_shell_verbs_make_users_and_tokens(fresh_db_url: str) -> None:
    url = fresh_db_url

    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cloudrepo", *args, "--db", url],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    made = run("user", "add", "first", "--role", "admin", "--password-stdin", stdin="first admin pw\n")
    assert made.returncode == 0, made.stderr
    asked = run("user", "add", "second", "--role", "student")
    assert (
        asked.returncode == 1 and "pass --password-stdin" in asked.stderr and "Traceback" not in asked.stderr
    )
    assert run("quota", "set", "first", "--vms", "3").returncode == 0
    token = run("token", "create", "first")
    assert token.returncode == 0, token.stderr
    last = token.stdout.strip().splitlines()[-1]
    assert last.startswith(accounts.TOKEN_PREFIX) and "first admin pw" not in token.stdout + made.stdout
    from cloudrepo.portal import db

    with db.sessions(url)() as s:
        user = accounts.token_user(s, last)
        assert user is not None and user.role == "admin"
        assert accounts.authenticate(s, "first", "first admin pw") is not None


def test_a_teacher_makes_a_group_and_then_sees_its_students_slices(world: World) -> None:
    assert world.api("tess", "GET", f"/api/slices/{SLICE}").status_code == 200  # ann is in class-a
    made = world.api("tess", "POST", "/api/groups", json={"name": "class-b"})
    assert made.status_code == 201, made.text
    assert world.api("ann", "POST", "/api/groups", json={"name": "mine"}).status_code == 403
    assert world.api("root1", "POST", "/api/groups/class-b/members", json={"name": "tess"}).status_code == 422
    bob_slice = world.api("bob", "POST", "/api/slices", json={"name": "bob-s"})
    assert bob_slice.status_code == 201, bob_slice.text
    try:
        assert world.api("tess", "GET", "/api/slices/bob-s").status_code == 403
        added = world.api("tess", "POST", "/api/groups/class-b/members", json={"name": "bob"})
        assert added.status_code == 200 and added.json()["students"] == ["bob"]
        assert world.api("tess", "GET", "/api/slices/bob-s").status_code == 200
        assert "bob-s" in [s["name"] for s in world.api("tess", "GET", "/api/slices").json()]
        assert world.api("ann", "GET", "/api/slices/bob-s").status_code == 403
        assert world.api("ann", "GET", "/api/groups").json() == []
    finally:
        assert world.api("bob", "DELETE", "/api/slices/bob-s").status_code == 200


def test_a_console_socket_from_another_origin_is_refused(world: World) -> None:
    url = _url("/api/slices/{name}/vms/{vm}/console")
    with (
        pytest.raises(WebSocketDisconnect) as exc,
        world.browser("ann").websocket_connect(url, headers={"origin": "http://evil.example"}),
    ):
        pass
    assert exc.value.code == 4403


def test_the_slice_page_removes_a_link_and_pins_one_to_a_vlan(world: World) -> None:
    browser, csrf = world.browser("ann"), world.csrf("ann")
    page = browser.get(f"/slices/{SLICE}")
    assert page.status_code == 200 and 'action="/slices/ann-s/links/rm"' in page.text
    ends = {"a": "1.eth1", "b": "2.eth1", "csrf": csrf}
    assert browser.post(f"/slices/{SLICE}/links/rm", data=ends).status_code == 303
    assert world.portal.section(SLICE)["links"] == []
    bad = browser.post(f"/slices/{SLICE}/links", data={**ends, "vlan": "600"})
    assert bad.status_code == 422 and "600" in bad.text and world.portal.section(SLICE)["links"] == []
    assert browser.post(f"/slices/{SLICE}/links", data={**ends, "vlan": "3"}).status_code == 303
    assert world.portal.section(SLICE)["links"] == [{"a": "1.eth1", "b": "2.eth1", "vlan": 3}]
    assert "(VLAN 3)" in browser.get(f"/slices/{SLICE}").text


def test_a_deploy_over_the_quota_is_refused_before_the_engine_runs(world: World) -> None:
    tight = {"vms": 1, "vcpus": 4, "memory_mb": 1024, "links": 4, "slices": 2}
    assert world.api("root1", "PUT", "/api/users/ann/quota", json=tight).status_code == 200
    jobs = dict(world.portal.jobs)
    try:
        refused = world.api("ann", "POST", f"/api/slices/{SLICE}/deploy")
        assert refused.status_code == 422, refused.text
        assert refused.json()["detail"] == ["quota vms of ann: 2 VMs wanted, 1 allowed"]
        assert world.portal.jobs == jobs, "a job started"
    finally:
        unlimited = {"vms": 50, "vcpus": 50, "memory_mb": 50000, "links": 50, "slices": 5}
        world.api("root1", "PUT", "/api/users/ann/quota", json=unlimited)


def test_an_export_imports_as_a_new_slice_and_a_bad_file_writes_nothing(world: World) -> None:
    browser, csrf = world.browser("bob"), world.csrf("bob")
    text = world.api("ann", "GET", f"/api/slices/{SLICE}/export").text
    bad = browser.post("/slices/import", data={"name": "bob-copy", "yaml": "vms: [1", "csrf": csrf})
    assert bad.status_code == 422 and "not valid YAML at line" in bad.text
    clash = browser.post("/slices/import", data={"name": "bob-copy", "yaml": text, "csrf": csrf})
    assert clash.status_code == 422 and "is held by another slice" in clash.text  # ann's VM ids
    assert not world.stack_file("bob-copy").exists()
    section = yaml.safe_load(text)["cloudrepo:slice"]
    for vm in section["vms"]:
        vm["id"] += 100
    section["links"] = [["101.eth1", "102.eth1"]]
    made = browser.post(
        "/slices/import", data={"name": "bob-copy", "yaml": yaml.safe_dump(section), "csrf": csrf}
    )
    assert made.status_code == 303, made.text
    try:
        got = world.api("bob", "GET", "/api/slices/bob-copy").json()["config"]
        assert [v["id"] for v in got["vms"]] == [101, 102]
        assert got["vlanPool"] != section["vlanPool"]  # a student's file keeps no pool: the portal gave one
    finally:
        assert world.api("bob", "DELETE", "/api/slices/bob-copy").status_code == 200


def test_registry_images_are_boot_choices_by_name(world: World, tmp_path: Path) -> None:
    from cloudrepo.images import add
    from components.image_store import Registry, open_store

    disk = tmp_path / "tiny.raw"
    disk.write_bytes(b"\0" * 4096)
    add(Registry(open_store()), "tiny", disk, "a test disk")
    assert "image:tiny" in world.browser("ann").get(f"/slices/{SLICE}").text
    assert "tiny" in world.browser("root1").get("/admin/images").text
    form = {"id": "3", "worker": "worker1", "boot": "image:tiny", "csrf": world.csrf("ann")}
    assert world.browser("ann").post(f"/slices/{SLICE}/vms", data=form).status_code == 303
    try:
        vm = next(v for v in world.portal.section(SLICE)["vms"] if v["id"] == 3)
        assert vm["launch"] == {"image": "tiny"}
    finally:
        assert world.api("ann", "DELETE", f"/api/slices/{SLICE}/vms/3").status_code == 200


def test_a_slice_is_checked_in_its_own_stack_files_settings(world: World) -> None:
    """A portal started without `--cloud` (or with another cloud) still checks a slice in the settings its
    stack file holds: an edit passes, and is refused for what those settings refuse."""
    from cloudrepo import edits
    from cloudrepo.portal.service import Cloud, Portal, Refused

    bare = Portal(world.project, Cloud(), world.portal.db)
    with bare.session() as db:
        ann = accounts.find_user(db, "ann")
    bare.edit(ann, SLICE, lambda s: edits.add_vm(s, 5, "worker2", 0, False), "VM 5")
    try:
        assert 5 in {v["id"] for v in world.portal.section(SLICE)["vms"]}
        with pytest.raises(Refused, match="unknown worker 'worker7'"):
            bare.edit(ann, SLICE, lambda s: edits.add_vm(s, 6, "worker7", 0, False), "VM 6")
    finally:
        bare.edit(ann, SLICE, lambda s: edits.rm_vm(s, 5)[0], "VM 5 removed")


# ---- images (the admin's) and import into a slice -------------------------------------------------------


def _disk(path: Path, size: str = "1M") -> str:
    """A blank qcow2 disk at `path` (qemu-img, as an operator makes one); its sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), size], check=True)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _image_names(world: World) -> list[str]:
    return [e["name"] for e in world.api("root1", "GET", "/api/images").json()]


def test_an_admin_adds_lists_and_removes_an_image_from_the_allowed_directories(world: World) -> None:
    sha = _disk(world.project / "images" / "lab-disk.qcow2")
    bad = world.api(
        "root1",
        "POST",
        "/api/images",
        json={"name": "bad name", "path": "/etc/passwd", "description": "a\nb"},
    )
    assert bad.status_code == 422, bad.text
    problems = bad.json()["detail"]
    assert problems[0].startswith("name: an image name is") and problems[1].startswith("description: ")
    assert "path: '/etc/passwd' is outside cloudrepo:qemu.imageDirs" in problems[2], problems
    (world.project / "images" / "escape").symlink_to("/etc/hostname")
    out = world.api("root1", "POST", "/api/images", json={"name": "esc", "path": "images/escape"})
    assert out.status_code == 422 and "which resolves to '/etc/hostname'" in out.json()["detail"][0]
    assert (
        world.api(
            "ann", "POST", "/api/images", json={"name": "x", "path": "images/lab-disk.qcow2"}
        ).status_code
        == 403
    )
    assert "lab-disk" not in _image_names(world) and "esc" not in _image_names(world)

    new = {"name": "lab-disk", "path": "images/lab-disk.qcow2", "description": "1 MiB blank"}
    made = world.api("root1", "POST", "/api/images", json=new)
    assert made.status_code == 201, made.text
    got = made.json()
    assert (got["sha256"], got["format"], got["description"]) == (sha, "qcow2", "1 MiB blank")
    assert got["added_by"] == "root1 (portal)"
    (listed,) = [e for e in world.api("root1", "GET", "/api/images").json() if e["name"] == "lab-disk"]
    assert listed == got and listed["size"] == (world.project / "images" / "lab-disk.qcow2").stat().st_size
    other = world.project / "images" / "other.qcow2"
    _disk(other, "2M")
    clash = world.api("root1", "POST", "/api/images", json={**new, "path": str(other)})
    assert clash.status_code == 409 and "exists with other content" in clash.json()["detail"][0]
    assert world.api("bob", "DELETE", "/api/images/lab-disk").status_code == 403
    assert "image:lab-disk" in world.browser("ann").get(f"/slices/{SLICE}").text  # students boot it by name

    assert world.api("root1", "DELETE", "/api/images/lab-disk").json() == {
        "name": "lab-disk",
        "removed": True,
    }
    assert "lab-disk" not in _image_names(world)
    gone = world.api("root1", "DELETE", "/api/images/lab-disk")
    assert gone.status_code == 404 and gone.json()["detail"] == ["no image named 'lab-disk'"]
    log = [e for e in world.api("root1", "GET", "/api/audit").json() if e["actor"] == "root1"]
    assert any(e["action"] == "image add" and sha in e["detail"] for e in log), log
    assert any(e["action"] == "image rm" and e["detail"].startswith("lab-disk:") for e in log), log


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(max_size=70), path=st.text(max_size=80))
def test_any_name_and_path_outside_the_image_directories_adds_nothing(
    world: World, name: str, path: str
) -> None:
    before = _image_names(world)
    got = world.api("root1", "POST", "/api/images", json={"name": name, "path": path})
    assert got.status_code in (409, 422), (name, path, got.text)
    assert all(isinstance(p, str) and p for p in got.json()["detail"])
    assert _image_names(world) == before


def test_the_images_page_adds_and_removes_an_image_with_its_csrf_token(world: World) -> None:
    disk = world.project / "images" / "page-disk.qcow2"
    _disk(disk)
    browser, csrf = world.browser("root1"), world.csrf("root1")
    page = browser.get("/admin/images")
    shown = re.search(r'<option value="([^"]*page-disk\.qcow2)">', page.text)  # a file to choose
    assert page.status_code == 200 and shown is not None and Path(shown[1]).samefile(disk), page.text
    form = {"name": "page-disk", "path": shown[1], "description": "from the page"}
    assert browser.post("/admin/images", data=form).status_code == 403  # no CSRF token
    assert "page-disk" not in _image_names(world)
    assert browser.post("/admin/images", data={**form, "csrf": csrf}).status_code == 303
    listed = browser.get("/admin/images").text
    assert 'data-image="page-disk"' in listed and "from the page" in listed
    assert size_text(disk.stat().st_size) in listed
    refused = browser.post("/admin/images", data={**form, "path": "/etc/passwd", "csrf": csrf})
    assert refused.status_code == 422 and "outside cloudrepo:qemu.imageDirs" in refused.text
    assert browser.post("/admin/images/page-disk/rm", data={}).status_code == 403
    assert browser.post("/admin/images/page-disk/rm", data={"csrf": csrf}).status_code == 303
    assert "page-disk" not in _image_names(world)


def test_yaml_imported_into_a_slice_from_its_page_keeps_the_rules(world: World) -> None:
    browser, csrf = world.browser("ann"), world.csrf("ann")
    assert 'action="/slices/ann-s/config"' in browser.get(f"/slices/{SLICE}").text
    exported = world.api("ann", "GET", f"/api/slices/{SLICE}/export").text
    before = world.stack_file(SLICE).read_bytes()
    section = yaml.safe_load(exported)["cloudrepo:slice"]
    bad = {
        **section,
        "vms": [*section["vms"], {"id": 3, "worker": "worker9"}],
        "links": [*section["links"], ["1.eth1", "8.eth1"]],
        "colour": "red",
    }
    refused = browser.post(f"/slices/{SLICE}/config", data={"yaml": yaml.safe_dump(bad), "csrf": csrf})
    assert refused.status_code == 422
    for part in ("unknown worker &#39;worker9&#39;", "colour", "8.eth1"):
        assert part in refused.text, (part, refused.text)
    assert browser.post(f"/slices/{SLICE}/config", data={"yaml": "vms: [1"}).status_code == 403  # no CSRF
    assert world.stack_file(SLICE).read_bytes() == before, "a refused import wrote the stack file"

    more = {**section, "vms": [*section["vms"], {"id": 3, "worker": "worker1", "dataInterfaces": 1}]}
    more["vlanPool"] = {"start": 900}  # a student's file keeps no pool: the slice's stays
    done = browser.post(f"/slices/{SLICE}/config", data={"yaml": yaml.safe_dump(more), "csrf": csrf})
    assert done.status_code == 303 and done.headers["location"] == f"/slices/{SLICE}"
    try:
        got = world.portal.section(SLICE)
        assert [v["id"] for v in got["vms"]] == [1, 2, 3] and got["vlanPool"] == section["vlanPool"]
        log = world.api("ann", "GET", "/api/audit").json()
        assert log[0]["action"] == "edit" and log[0]["detail"] == "import" and log[0]["slice"] == SLICE
    finally:
        assert (
            browser.post(f"/slices/{SLICE}/config", data={"yaml": exported, "csrf": csrf}).status_code == 303
        )
    assert world.portal.section(SLICE) == section


def test_an_import_refused_lists_the_pool_with_the_slice_rules(world: World) -> None:
    section = world.portal.section(SLICE)
    bad = {**section, "vlanPool": {"start": 50}, "vms": [{"id": 1, "worker": "worker9"}]}
    refused = world.api("ann", "PUT", f"/api/slices/{SLICE}/config", json=bad)
    assert refused.status_code == 422
    problems = refused.json()["detail"]
    assert "vlanPool: only an admin pins a slice's VLAN pool" in problems
    assert any("unknown worker 'worker9'" in p for p in problems), problems
    assert world.portal.section(SLICE) == section


# ---- jobs kept in the database -------------------------------------------------------------------------


def test_a_job_is_followed_from_another_server_process_and_after_a_reload(world: World) -> None:
    """The lines and the result of a job this portal runs, read by a second portal on the same database
    (another server process: nothing shared in memory): its API, its event stream and the slice page."""
    job = world.portal.new_job(SLICE, "preview", "ann")
    job.add("first line")
    job.add("second\nthird\n")
    other = Portal(world.project, world.portal.cloud, world.portal.db)
    second = TestClient(create_app(other, world.client.app.state.signer), follow_redirects=False)  # type: ignore[attr-defined]
    seen = second.get(f"/api/jobs/{job.id}", headers=world.bearer("tess"))
    assert seen.status_code == 200, seen.text
    assert seen.json()["lines"] == ["first line", "second", "third"] and not seen.json()["done"]
    assert second.get(f"/api/jobs/{job.id}", headers=world.bearer("bob")).status_code == 403
    refused = world.portal.new_job(SLICE, "up", "ann")  # a deploy the lock refused while the job ran
    refused.add("slice 'ann-s' is locked")
    refused.finish(False)

    def finish() -> None:
        job.add("last line")
        job.finish(True)

    finisher = threading.Timer(1.0, finish)
    finisher.start()
    stream = second.get(f"/api/jobs/{job.id}/events", headers=world.bearer("ann"))  # ends with the job
    finisher.join()
    assert stream.text.split("\n\n")[:5] == [
        "data: first line", "data: second", "data: third", "data: last line", "event: end\ndata: ok"
    ]  # fmt: skip
    second.cookies.set(sessions.COOKIE, world.cookies["ann"][0])
    page = second.get(f"/slices/{SLICE}")  # a reload of the slice page
    assert (
        f'data-job="{job.id}"' in page.text and "preview succeeded" in page.text and "last line" in page.text
    )
    assert job.id not in other.jobs
    assert second.get(f"/api/jobs/{refused.id}", headers=world.bearer("ann")).json()["ok"] is False


def test_a_job_whose_server_process_is_gone_ends_failed_saying_so(world: World) -> None:
    from cloudrepo.portal.db import JobLine, JobRow

    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    host = service.this_runner().partition(":")[0]
    with world.portal.session() as db:
        row = JobRow(
            slice=SLICE,
            verb="up",
            actor="ann",
            runner=f"{host}:{gone.stdout.strip()}:abcd",
            done=False,
            ok=False,
        )
        db.add(row)
        db.flush()
        db.add(JobLine(job_id=row.id, line="a line before the end"))
        job_id = row.id
    got = world.api("ann", "GET", f"/api/jobs/{job_id}").json()
    assert (got["done"], got["ok"]) == (True, False)
    assert got["lines"] == ["a line before the end", service.ORPHANED]
    page = world.browser("ann").get(f"/slices/{SLICE}").text
    assert "deploy failed" in page and service.ORPHANED in page and 'data-done="true"' in page
