"""The portal as a person uses it, in a real headless Chromium (Debian's `chromium`, driven by Playwright),
against a live `cloudrepo serve` on the testbed: an admin creates a student and a teacher and adds a disk
of the cloud's image directories as a named image (the Images page); the teacher makes a group and adds the
student (the Groups page); the student logs in, creates a slice, adds two VMs on two workers (one with the
named image as its disk) and a link, sees the preview, deploys and watches the engine's events arrive,
sees both VMs running with their addresses, opens the console of one and types a command that the guest
answers, then destroys the slice. A second deploy sent while the first runs is refused with the backend's
lock message, and the slice page loaded anew meanwhile follows the running deploy to its end; removing
the image while the slice runs is refused naming it, and done once it is gone. A screenshot of each step
is kept (build/artefacts/portal-e2e/)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab import PROJECT_ROOT
from lab.common import NETWORK_HOST
from lab.procs import terminate
from tests.integration.clikit import Checkout, cloud_file
from tests.integration.e2ekit import group_alive, guest_launch, qemu_tcg, wall_time
from tests.labfixtures import held_host_lock
from tests.portal.pgserver import free_port

CHROMIUM = Path("/usr/bin/chromium")
SLICE = "portal-e2e"
VMS = (7601, 7602)
ADMIN, ADMIN_PW = "boss", "the admin's password"
STUDENT, STUDENT_PW = "stu", "the student's password"
TEACHER, TEACHER_PW = "tea", "the teacher's password"
GROUP = "class-1"
IMAGE = "e2e-disk"
"""A blank qcow2 disk the admin adds in the Images page; the first VM boots the guest with it as a disk."""
ARTEFACTS = PROJECT_ROOT / "build" / "artefacts" / "portal-e2e"


@pytest.fixture
def served(engine: None, testbed: Any, tmp_path: Path) -> Iterator[tuple[str, Checkout]]:
    """A live `cloudrepo serve` on a free loopback port: the testbed's cloud (its SSH key a secret), the
    testbed's guest as the boot preset `busybox`, a SQLite database and its first admin made by the
    shell verb. The slice is destroyed at the end whatever happened."""
    backend = tmp_path / "backend"
    backend.mkdir()
    op = Checkout(PROJECT_ROOT, {"PULUMI_BACKEND_URL": f"file://{backend}"})
    from lab.pulumi_cli import make_project

    op.project = make_project(tmp_path / "project")
    images = tmp_path / "images"
    images.mkdir()
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", str(images / "blank.qcow2"), "16M"], check=True
    )
    qemu = qemu_tcg()
    qemu["cloudrepo:qemu"]["imageDirs"].append(str(images))
    cloud = cloud_file(tmp_path, backend, extra=qemu)
    launches = tmp_path / "launches.yaml"
    with_disk = {**guest_launch(), "image": IMAGE}
    launches.write_text(yaml.safe_dump({"busybox": guest_launch(), "busybox-disk": with_disk}))
    db = f"sqlite:///{tmp_path / 'portal.db'}"
    argv = [sys.executable, "-m", "cloudrepo", "--project", str(op.project)]
    made = subprocess.run(
        [*argv, "user", "add", ADMIN, "--role", "admin", "--password-stdin", "--db", db],
        input=ADMIN_PW + "\n", env=op.env(), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    port = free_port()
    server = subprocess.Popen(
        [*argv, "serve", "--listen", f"127.0.0.1:{port}", "--cloud", str(cloud), "--launches", str(launches),
         "--db", db],
        env=op.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_up(url, server)
        yield url, op
    finally:
        server.terminate()
        try:
            out, _ = server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            out, _ = server.communicate()
        print("--- cloudrepo serve ---\n" + out[-4000:])
        engine_ended(server.pid, op)
        if op.stack_file(SLICE).exists():
            op.cleanup(SLICE)


def engine_ended(pgid: int, op: Checkout, timeout: float = 600) -> None:
    """Wait for an engine the server started (a deploy the failed test left running, in the server's process
    group) to end, so the slice's destroy does not meet its lock; killed after `timeout`, its lock
    released."""
    deadline = time.monotonic() + timeout
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(1)
    if group_alive(pgid):
        terminate(group_alive(pgid))
        subprocess.run(
            ["pulumi", "cancel", "--yes", "--stack", SLICE], cwd=op.project, env=op.env(), check=False
        )


def wait_up(url: str, server: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, (
            f"cloudrepo serve ended: {server.stdout.read() if server.stdout else ''}"
        )
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"cloudrepo serve did not answer within {timeout}s")


def terminal_text(page: Any) -> str:
    return str(
        page.evaluate(
            """() => { const b = window.portalTerminal.buffer.active; const out = [];
                 for (let i = 0; i < b.length; i++) out.push(b.getLine(i).translateToString(true));
                 return out.join("\\n"); }"""
        )
    )


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is missing (scripts/install-system)")
def test_a_student_builds_deploys_uses_and_destroys_a_slice_in_the_browser(
    served: tuple[str, Checkout], tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, op = served
    shots = tmp_path / "screenshots"
    shots.mkdir()
    step = iter(range(1, 100))

    def shot(page: Any, what: str) -> None:
        page.screenshot(path=str(shots / f"{next(step):02d}-{what}.png"), full_page=True)

    scenario = "portal: browser, admin -> student -> slice -> deploy -> console -> destroy"
    with wall_time(scenario), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            admin = browser.new_context().new_page()
            log_in(admin, url, ADMIN, ADMIN_PW)
            admin.goto(f"{url}/admin/users")
            for name, role, password in ((STUDENT, "student", STUDENT_PW), (TEACHER, "teacher", TEACHER_PW)):
                form = admin.locator("#add-user")
                form.locator("input[name=name]").fill(name)
                form.locator("select[name=role]").select_option(role)
                form.locator("input[name=password]").fill(password)
                form.locator("button").click()
                expect(admin.locator("#users")).to_contain_text(name)
            shot(admin, "admin-created-student-and-teacher")
            admin.goto(f"{url}/admin/images")
            form = admin.locator("#add-image")
            offered = admin.locator("#image-files option").evaluate_all("(os) => os.map((o) => o.value)")
            (disk,) = [f for f in offered if f.endswith("/blank.qcow2")]  # a file of the image directories
            form.locator("input[name=name]").fill(IMAGE)
            form.locator("input[name=path]").fill(disk)
            form.locator("input[name=description]").fill("16 MiB blank")
            form.locator("button").click()
            expect(admin.locator(f"#images tr[data-image='{IMAGE}']")).to_contain_text("qcow2")
            shot(admin, "admin-added-image")

            teacher = browser.new_context().new_page()
            log_in(teacher, url, TEACHER, TEACHER_PW)
            teacher.goto(f"{url}/groups")
            teacher.locator("#add-group input[name=name]").fill(GROUP)
            teacher.locator("#add-group button").click()
            row = teacher.locator(f"#groups tr[data-group='{GROUP}']")
            row.locator("input[name=name]").fill(STUDENT)
            row.locator("button").click()
            expect(row.locator(".students")).to_have_text(STUDENT)
            shot(teacher, "teacher-group-with-student")

            page = browser.new_context().new_page()
            page.set_default_timeout(60_000)
            log_in(page, url, STUDENT, STUDENT_PW)
            page.fill("#new-name", SLICE)
            page.click("#create")
            expect(page.locator("h1")).to_have_text(f"Slice {SLICE}")
            boots = ("busybox-disk", "busybox")
            for vm, worker, boot in zip(VMS, ("worker1", "worker2"), boots, strict=True):
                form = page.locator("#add-vm")
                form.locator("input[name=id]").fill(str(vm))
                form.locator("select[name=worker]").select_option(worker)
                form.locator("input[name=data_interfaces]").fill("1")
                form.locator("select[name=boot]").select_option(boot)
                form.locator("button").click()
                expect(page.locator(f"#vms tr[data-vm='{vm}']")).to_contain_text(worker)
            link = page.locator("#add-link")
            link.locator("input[name=a]").fill(f"{VMS[0]}.eth1")
            link.locator("input[name=b]").fill(f"{VMS[1]}.eth1")
            link.locator("button").click()
            expect(page.locator("#links")).to_contain_text(f"{VMS[0]}.eth1 -- {VMS[1]}.eth1")
            shot(page, "slice-built")

            page.click("#preview")
            expect(page.locator("#result")).to_have_text("preview succeeded", timeout=180_000)
            expect(page.locator("#events")).to_contain_text("+ ")
            shot(page, "preview")

            # the network node's lock held: the first deploy waits at its pool claim (every resource waits
            # for it), so it is still running when the second one and the reloaded page meet it
            with held_host_lock(NETWORK_HOST):
                t0 = time.monotonic()
                page.click("#deploy")
                expect(page.locator("#events")).not_to_be_empty(timeout=60_000)
                first_event = time.monotonic() - t0
                shot(page, "deploy-progress")
                second = page.evaluate(SECOND_DEPLOY, SLICE)  # the backend's lock refuses it
                assert not second["ok"], second
                assert any(
                    "is locked: another deploy or destroy of it is running" in x for x in second["lines"]
                ), "the second deploy's lines:\n" + "\n".join(second["lines"])
                again = page.context.new_page()  # the slice page loaded anew while the deploy runs
                again.goto(f"{url}/slices/{SLICE}")
                expect(again.locator("#events")).to_have_attribute("data-done", "false", timeout=30_000)
                expect(again.locator("#result")).to_have_text("deploy running…", timeout=30_000)
                expect(again.locator("#events")).not_to_be_empty(timeout=30_000)
                shot(again, "deploy-followed-after-reload")
            with page.expect_navigation(timeout=300_000):  # the page reloads itself after a deploy
                expect(page.locator("#result")).to_have_text("deploy succeeded", timeout=300_000)
            expect(again.locator("#result")).to_have_text("deploy succeeded", timeout=60_000)
            again.close()
            print(f"[portal] deploy click to first streamed event: {first_event:.2f}s")
            for vm in VMS:
                row = page.locator(f"#vms tr[data-vm='{vm}']")
                expect(row.locator(".state")).to_have_text("running", timeout=30_000)
                expect(row.locator(".addresses")).to_contain_text("eth1: 192.168.")
            expect(page.locator("#show")).to_contain_text(f"{VMS[0]}")
            shot(page, "deployed-running")
            teacher.goto(url)  # the student's slice, seen by the teacher of their group
            expect(teacher.locator("#slices")).to_contain_text(SLICE)
            admin.goto(f"{url}/admin/images")
            admin.once("dialog", lambda d: d.accept())
            admin.click(f"#images tr[data-image='{IMAGE}'] button.rm")
            expect(admin.locator("#problems")).to_contain_text(
                f"used by deployed slice(s): {SLICE} (vm {VMS[0]})"
            )
            shot(admin, "image-in-use-refused")

            page.click(f"#vms tr[data-vm='{VMS[0]}'] a.console")
            expect(page.locator("#console-state")).to_have_text("connected", timeout=60_000)
            page.click("#terminal")
            deadline = time.monotonic() + 90
            while "cr-42-ok" not in answered(terminal_text(page)):
                assert time.monotonic() < deadline, terminal_text(page)
                page.keyboard.type("echo cr-$((6*7))-ok")
                page.keyboard.press("Enter")
                page.wait_for_timeout(3000)
            shot(page, "console-answered")

            page.goto(f"{url}/slices/{SLICE}")
            leased = page.evaluate(LEASES, SLICE)  # the guests took their addresses by DHCP
            assert len(leased) == len(VMS) and all(ip.startswith("192.168.") for ip in leased), leased
            page.reload()
            for vm in VMS:
                expect(page.locator(f"#vms tr[data-vm='{vm}'] .addresses")).to_contain_text("(lease seen)")

            page.goto(f"{url}/slices/{SLICE}")
            page.once("dialog", lambda d: d.accept())
            page.click("#destroy")
            page.wait_for_url(f"{url}/", timeout=300_000)
            expect(page.locator("#slices")).not_to_contain_text(SLICE)
            shot(page, "destroyed")
            admin.goto(f"{url}/admin/images")
            admin.once("dialog", lambda d: d.accept())
            admin.click(f"#images tr[data-image='{IMAGE}'] button.rm")
            admin.wait_for_url(f"{url}/admin/images")
            expect(admin.locator("#images")).not_to_contain_text(IMAGE)
            shot(admin, "image-removed")
        finally:
            browser.close()
            shutil.rmtree(ARTEFACTS, ignore_errors=True)  # this run's screenshots only
            ARTEFACTS.mkdir(parents=True)
            for f in shots.glob("*.png"):
                shutil.copy(f, ARTEFACTS / f.name)
    assert not op.stack_file(SLICE).exists()
    assert len(list(shots.glob("*.png"))) == 12


SECOND_DEPLOY = """async (slice) => {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const r = await fetch(`/api/slices/${slice}/deploy`, {method: "POST", headers: {"X-CSRF-Token": csrf}});
  const job = await r.json();
  for (;;) {
    const state = await (await fetch(`/api/jobs/${job.job}`)).json();
    if (state.done) return state;
    await new Promise((done) => setTimeout(done, 300));
  }
}"""
"""A second deploy of the slice from the page's session, followed to its end (the job's lines)."""
LEASES = """async (slice) => {
  for (let i = 0; i < 120; i++) {
    const state = await (await fetch(`/api/slices/${slice}/status`)).json();
    if (state.leases && state.leases.length >= 2) return state.leases;
    await new Promise((done) => setTimeout(done, 500));
  }
  return [];
}"""
"""The addresses leased on the slice's links, once both guests have one (up to a minute)."""


def answered(screen: str) -> str:
    """The screen's lines that are the guest's answers (a typed line holds the `$((` it was sent with)."""
    return "\n".join(line for line in screen.splitlines() if "$((" not in line)


def log_in(page: Any, url: str, name: str, password: str) -> None:
    page.goto(f"{url}/login")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", password)
    page.click("#login")
    page.wait_for_url(f"{url}/")
