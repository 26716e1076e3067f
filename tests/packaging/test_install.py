"""The project installs with pip into a fresh virtualenv (the README's real-cloud install) and imports there.

Needs PyPI (the build backend and the dependencies; pip's cache makes later runs quick).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import venv
from pathlib import Path

from lab import PROJECT_ROOT

SHIPPED = ("vocabulary", "transport", "providers", "providers.kinds", "components", "lab")
CHECK = r"""
import importlib, json, pathlib, sys
import transport.ssh, providers.kinds.tap_port, components.config, components.slice, lab.cli, lab.pulumi_cli
found = {}
for name in sys.argv[1:]:
    try:
        found[name] = str(pathlib.Path(importlib.import_module(name).__file__).parent)
    except ImportError:
        found[name] = None
print(json.dumps(found))
"""


def test_pip_installs_the_shipped_packages_into_a_fresh_virtualenv(tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    # from a copy of what a clone holds (the build leaves its build/ and egg-info there, not in the checkout)
    src = tmp_path / "src"
    shutil.copytree(
        PROJECT_ROOT,
        src,
        ignore=shutil.ignore_patterns(".*", "build", "*.egg-info", "__pycache__", "toolchain", "tests"),
    )
    pip = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(src)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr
    extra = ("cloudrepo",) if (PROJECT_ROOT / "cloudrepo" / "__init__.py").exists() else ()
    # run outside the checkout, so only what was installed can be imported
    out = subprocess.run(
        [str(python), "-c", CHECK, *SHIPPED, *extra, "bench", "toolchain"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    site = env_dir / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    for name in (*SHIPPED, *extra):
        assert found[name] == str(site.joinpath(*name.split("."))), (name, found[name])
    assert (site / "lab" / "README.md").is_file()
    assert (found["bench"], found["toolchain"]) == (None, None), "only the runtime packages ship"
    if extra:  # the operators' command is installed too
        cli = subprocess.run([str(env_dir / "bin" / "cloudrepo"), "--help"], capture_output=True, text=True)
        assert cli.returncode == 0 and "cloudrepo" in cli.stdout, cli.stdout + cli.stderr
