"""`scripts/activate` gives the lab passphrase to this checkout's own file backend only: for any other
backend it invents none (and takes back one left from an earlier `source`), and says so."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAB = "cloudrepo-lab-only"
UNSET = "<unset>"


def activate(env: dict[str, str]) -> tuple[str, str, str]:
    """Source the script in a clean bash with `env`: PULUMI_BACKEND_URL, PULUMI_CONFIG_PASSPHRASE after it
    (UNSET when unset), and what it said on stderr."""
    script = (
        f"source {ROOT / 'scripts' / 'activate'} && "
        f'printf "%s\\n%s\\n" "$PULUMI_BACKEND_URL" "${{PULUMI_CONFIG_PASSPHRASE-{UNSET}}}"'
    )
    result = subprocess.run(
        ["bash", "--noprofile", "--norc", "-c", script],
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", **env},
        capture_output=True,
        text=True,
        check=True,
    )
    backend, passphrase = result.stdout.splitlines()
    return backend, passphrase, result.stderr


LAB_BACKEND = f"file://{ROOT}/.pulumi-state"


@pytest.mark.parametrize(
    ("env", "passphrase", "says"),
    [
        ({}, LAB, ""),
        ({"PULUMI_BACKEND_URL": LAB_BACKEND}, LAB, ""),
        ({"PULUMI_BACKEND_URL": LAB_BACKEND + "/"}, LAB, ""),
        ({"PULUMI_CONFIG_PASSPHRASE": "mine"}, "mine", ""),
        ({"PULUMI_CONFIG_PASSPHRASE": ""}, "", ""),
        ({"PULUMI_CONFIG_PASSPHRASE_FILE": "/run/pass"}, UNSET, ""),
        ({"PULUMI_BACKEND_URL": "s3://team-state?region=x"}, UNSET, "left unset"),
        ({"PULUMI_BACKEND_URL": "file:///srv/team-state"}, UNSET, "left unset"),
        ({"PULUMI_BACKEND_URL": f"file://{ROOT}/.pulumi-state-other"}, UNSET, "left unset"),
        ({"PULUMI_BACKEND_URL": "https://api.pulumi.com"}, UNSET, "left unset"),
        ({"PULUMI_BACKEND_URL": "s3://team-state", "PULUMI_CONFIG_PASSPHRASE": "team"}, "team", ""),
        ({"PULUMI_BACKEND_URL": "s3://team-state", "PULUMI_CONFIG_PASSPHRASE_FILE": "/run/p"}, UNSET, ""),
        ({"PULUMI_BACKEND_URL": "s3://team-state", "PULUMI_CONFIG_PASSPHRASE": LAB}, UNSET, "lab passphrase"),
    ],
    ids=[
        "lab-default",
        "lab-explicit",
        "lab-slash",
        "own-passphrase",
        "empty-passphrase",
        "passphrase-file",
        "s3",
        "other-file-backend",
        "lookalike-dir",
        "pulumi-cloud",
        "team-passphrase",
        "team-passphrase-file",
        "lab-passphrase-left-over",
    ],
)
def test_the_lab_passphrase_is_for_the_lab_backend_only(
    env: dict[str, str], passphrase: str, says: str
) -> None:
    backend, got, stderr = activate(env)
    assert backend == env.get("PULUMI_BACKEND_URL", LAB_BACKEND)
    assert got == passphrase
    if says:
        assert says in stderr and "PULUMI_CONFIG_PASSPHRASE" in stderr
        assert "team-state" not in stderr, "the backend URL is not echoed"
    else:
        assert stderr == ""
