"""Secrets never on a command line: `cloudrepo slice create --cloud` re-encrypts the cloud file's secrets
for the new stack under `strace`, which records the argument vector of every program it and its
descendants start (what `ps` shows any user of the machine), and no vector holds the key; the same trace
does show it when the secret goes through the Automation API's `set_config`. An engine error under the
command is an answer, not a traceback."""

from __future__ import annotations

import io
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import paramiko
import pytest
import yaml

from lab.pulumi_cli import LAB_PASSPHRASE, PULUMI_HOME, TOOLCHAIN_BIN, PulumiCLI, make_project
from tests.integration.clikit import Checkout

pytestmark = pytest.mark.integration


TRACE = ("strace", "-f", "-qq", "-e", "trace=execve", "-e", "signal=none", "-s", "65536", "-o")
"""Every program the traced process and its descendants start, with its whole argument vector (what `ps`
shows any user of the machine), one `execve` line each: nothing is missed, however short it lives."""


@dataclass(frozen=True)
class Execs:
    """The `execve` calls of a traced run."""

    lines: tuple[str, ...]

    @classmethod
    def read(cls, path: Path) -> Execs:
        lines = tuple(line for line in path.read_text().splitlines() if " execve(" in line)
        assert lines, f"{path}: the trace holds no execve: strace did not run"
        return cls(lines)

    def holding(self, needle: str) -> list[str]:
        return [line[:200] for line in self.lines if needle in line]

    def setting_secrets(self) -> list[str]:
        """The engine calls that set a secret (`pulumi ... config set --secret ...`)."""
        return [line for line in self.lines if '"config", "set"' in line and '"--secret"' in line]


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
    trace = tmp_path / "create.trace"
    op = Checkout(
        project=make_project(tmp_path / "checkout"),
        backend_env={"PULUMI_BACKEND_URL": f"file://{state}"},
        script=[*TRACE, str(trace), sys.executable, "-m", "cloudrepo"],
    )

    result = op.run("slice", "create", "lab7", "--pool", "300", "--cloud", str(cloud))
    assert result.returncode == 0, result.stdout + result.stderr
    execs = Execs.read(trace)
    print(f"traced {len(execs.lines)} programs; secret set by: {execs.setting_secrets()}")
    assert execs.holding(needle) == []
    # the trace holds the very process that set the secret, and its argument vector holds no value
    assert any('"cloudrepo:sshPrivateKey"' in c for c in execs.setting_secrets()), execs.setting_secrets()
    assert needle not in result.stdout + result.stderr
    # the secret arrived whole, encrypted for the new stack
    text = op.stack_file("lab7").read_text()
    assert "cloudrepo:sshPrivateKey:\n    secure:" in text and needle not in text
    stack = PulumiCLI(project_dir=op.project, backend_dir=state, stack="lab7")
    assert stack.run("config", "get", "cloudrepo:sshPrivateKey").stdout.rstrip("\n") == key.rstrip("\n")

    # control: the Automation API's own set_config puts the value on the engine's command line, and the
    # same trace shows it there
    control = tmp_path / "control.trace"
    program = (
        "import sys\n"
        "from pulumi import automation as auto\n"
        "ws = auto.LocalWorkspace(work_dir=sys.argv[1], pulumi_home=sys.argv[2], env_vars={"
        "'PULUMI_BACKEND_URL': sys.argv[3], 'PULUMI_CONFIG_PASSPHRASE': sys.argv[4]}, "
        "pulumi_command=auto.PulumiCommand(root=sys.argv[5], skip_version_check=True))\n"
        "ws.set_config('lab7', 'cloudrepo:other', auto.ConfigValue(value=sys.stdin.read(), secret=True))\n"
    )
    args = [str(op.project), str(PULUMI_HOME), f"file://{state}", LAB_PASSPHRASE, str(TOOLCHAIN_BIN.parent)]
    subprocess.run(
        [*TRACE, str(control), sys.executable, "-c", program, *args], input=key, text=True, check=True
    )
    assert Execs.read(control).holding(needle), (
        "the trace missed a secret on a command line: it proves nothing"
    )


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
