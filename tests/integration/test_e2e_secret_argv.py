"""Secrets never on a command line: `cloudrepo slice create --cloud` re-encrypts the cloud file's secrets
for the new stack while a watcher reads every process's command line (/proc/*/cmdline, as `ps` shows it to
any user of the machine) and never sees the key; the same watcher does see it when the secret goes through
the Automation API's `set_config`. An engine error under the command is an answer, not a traceback."""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import paramiko
import pytest
import yaml
from pulumi import automation as auto

from lab.pulumi_cli import LAB_PASSPHRASE, PULUMI_HOME, TOOLCHAIN_BIN, PulumiCLI, make_project
from tests.integration.clikit import Checkout

pytestmark = pytest.mark.integration


@dataclass
class Watcher:
    """Reads every process's command line until stopped: which held `needle`, and how many it saw."""

    needle: str
    seen: set[int] = field(default_factory=set)
    leaks: list[str] = field(default_factory=list)
    set_secret_calls: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def scan(self) -> None:
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as fh:
                    argv = fh.read().decode(errors="replace").split("\0")
            except OSError:
                continue
            pid = int(entry.name)
            line = " ".join(argv)
            if pid not in self.seen and "config" in argv and "set" in argv and "--secret" in argv:
                self.set_secret_calls.append(line)
            self.seen.add(pid)
            if self.needle in line:
                self.leaks.append(line[:200])

    def run(self) -> None:
        while not self.stop.is_set():
            self.scan()


@contextmanager
def watching(needle: str) -> Iterator[Watcher]:
    watcher = Watcher(needle)
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    try:
        yield watcher
    finally:
        watcher.stop.set()
        thread.join()


def private_key() -> str:
    """A fresh key in PEM, as an operator's key file holds it."""
    buf = io.StringIO()
    paramiko.ECDSAKey.generate(bits=256).write_private_key(buf)
    return buf.getvalue()


def cloud_file(root: Path, key: str) -> Path:
    """An operator's stack config file: hosts and SSH settings, the key as a secret (set on stdin)."""
    project = make_project(root / "cloud-src")
    cli = PulumiCLI(project_dir=project, backend_dir=root / "cloud-state", stack="cloudsrc")
    cli.init()
    path = project / "Pulumi.cloudsrc.yaml"
    doc = yaml.safe_load(path.read_text()) or {}
    doc["config"] = {
        "cloudrepo:networkNode": {"host": "127.0.0.1", "port": 2200},
        "cloudrepo:workers": {"worker1": {"host": "127.0.0.1", "port": 2201}},
        "cloudrepo:ssh": {"user": "root", "knownHostsPath": "known_hosts", "sudo": True},
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    cli.run("config", "set", "--secret", "cloudrepo:sshPrivateKey", input=key)
    assert "secure:" in path.read_text() and key.splitlines()[1] not in path.read_text()
    return path


def test_slice_create_cloud_never_puts_a_secret_on_a_command_line(engine: None, tmp_path: Path) -> None:
    key = private_key()
    needle = key.splitlines()[2]  # a line of the key body: in no other process by chance
    cloud = cloud_file(tmp_path, key)
    state = tmp_path / "state"
    op = Checkout(
        project=make_project(tmp_path / "checkout"), backend_env={"PULUMI_BACKEND_URL": f"file://{state}"}
    )

    with watching(needle) as watcher:
        result = op.run("slice", "create", "lab7", "--pool", "300", "--cloud", str(cloud))
    assert result.returncode == 0, result.stdout + result.stderr
    print(f"watched {len(watcher.seen)} processes; secret set by: {watcher.set_secret_calls}")
    assert watcher.leaks == [], watcher.leaks
    # the watcher saw the very process that set the secret, and its argument vector holds no value
    assert any("cloudrepo:sshPrivateKey" in c for c in watcher.set_secret_calls), watcher.set_secret_calls
    assert needle not in result.stdout + result.stderr
    # the secret arrived whole, encrypted for the new stack
    text = op.stack_file("lab7").read_text()
    assert "cloudrepo:sshPrivateKey:\n    secure:" in text and needle not in text
    stack = PulumiCLI(project_dir=op.project, backend_dir=state, stack="lab7")
    assert stack.run("config", "get", "cloudrepo:sshPrivateKey").stdout.rstrip("\n") == key.rstrip("\n")

    # control: the Automation API's own set_config puts the value on the engine's command line, and the
    # watcher sees it there
    ws = auto.LocalWorkspace(
        work_dir=str(op.project),
        pulumi_home=str(PULUMI_HOME),
        env_vars={"PULUMI_BACKEND_URL": f"file://{state}", "PULUMI_CONFIG_PASSPHRASE": LAB_PASSPHRASE},
        pulumi_command=auto.PulumiCommand(root=str(TOOLCHAIN_BIN.parent), skip_version_check=True),
    )
    with watching(needle) as control:
        for _ in range(3):  # the call is short: three tries for the watcher to catch it
            ws.set_config("lab7", "cloudrepo:other", auto.ConfigValue(value=key, secret=True))
            time.sleep(0.05)
            if control.leaks:
                break
    assert control.leaks, "the watcher missed a secret on a command line: it proves nothing"


def test_an_engine_error_under_the_command_is_an_answer(engine: None, tmp_path: Path) -> None:
    """A backend the engine refuses (a cloud URL without a token) and a file backend that cannot be made:
    every verb exits 1 with the engine's (or the system's) own words."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    for url, words in (
        ("bogus://backend", "PULUMI_ACCESS_TOKEN must be set"),
        (f"file://{blocker}/state", "Not a directory"),
    ):
        op = Checkout(project=make_project(tmp_path / "checkout"), backend_env={"PULUMI_BACKEND_URL": url})
        for args in (
            ("list",),
            ("show", "lab7"),
            ("preview", "lab7"),
            ("slice", "create", "lab7", "--pool", "9"),
        ):
            result = op.run(*args)
            print(url, args, result.returncode, result.stderr.strip()[-200:])
            assert result.returncode == 1, (args, result.stdout, result.stderr)
            assert "Traceback" not in result.stdout + result.stderr
            assert words in result.stderr, result.stderr
