"""Fixtures for the end-to-end scenarios: slices as real stacks on the testbed, always destroyed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.common import lab_dir
from lab.pulumi_cli import PulumiCLI, make_project, pulumi_binary
from tests.integration.slicekit import SliceStack, lab_config, slice_section


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in this folder needs the testbed and the real engine (a `pytestmark` in a conftest marks
    nothing)."""
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def engine() -> None:
    if pulumi_binary() is None:
        pytest.skip("run `make setup` to build the Pulumi toolchain")


@pytest.fixture(scope="session")
def slice_backend(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One file backend for the session: several slices (stacks) side by side, as operators run them."""
    return tmp_path_factory.mktemp("backend")


@pytest.fixture
def slice_stack(
    engine: None, testbed: Any, slice_backend: Path, tmp_path: Path
) -> Iterator[Callable[..., SliceStack]]:
    """Factory: `slice_stack(name, pool_start, vms, links, **config)` -> an initialised stack with its config
    written. Every stack it made is destroyed and removed at teardown, even when the test failed."""
    made: list[SliceStack] = []

    def make(
        name: str,
        pool_start: int,
        vms: list[dict[str, Any]],
        links: list[Any],
        *,
        secret_key: bool = False,
        extra: dict[str, Any] | None = None,
    ) -> SliceStack:
        project = make_project(tmp_path / f"project-{name}")
        stack = SliceStack(PulumiCLI(project_dir=project, backend_dir=slice_backend, stack=name))
        stack.cli.init()
        made.append(stack)
        config = {
            **lab_config(secret_key=secret_key),
            **slice_section(pool_start, vms, links),
            **(extra or {}),
        }
        secrets = {"cloudrepo:sshPrivateKey": (Path(testbed.inventory["privateKeyPath"])).read_text()}
        stack.write_config(config, secrets if secret_key else None)
        return stack

    yield make
    failed = [name for name in (teardown(stack) for stack in reversed(made)) if name]
    if failed:
        pytest.fail(
            f"teardown: `pulumi destroy` failed for stack(s) {', '.join(failed)}; their objects are still on "
            f"the testbed in {lab_dir()} (output above)",
            pytrace=False,
        )


@pytest.fixture
def elsewhere(engine: None, testbed: Any, tmp_path: Path) -> Iterator[Callable[[str], SliceStack]]:
    """Factory of stacks on a second file backend (another team's): always destroyed at teardown."""
    made: list[SliceStack] = []

    def make(name: str) -> SliceStack:
        stack = SliceStack(
            PulumiCLI(
                project_dir=make_project(tmp_path / f"project2-{name}"),
                backend_dir=tmp_path / "backend2",
                stack=name,
            )
        )
        stack.cli.init()
        made.append(stack)
        return stack

    yield make
    failed = [name for name in (teardown(stack) for stack in reversed(made)) if name]
    assert not failed, f"teardown: `pulumi destroy` failed for {failed}"


def teardown(stack: SliceStack) -> str | None:
    """Destroy and remove the stack; its name when the destroy failed (the stack is then kept)."""
    result = stack.cli.destroy_all()
    if result.returncode != 0:
        print(f"--- destroy of stack {stack.cli.stack} ---\n{result.stdout}\n{result.stderr}")
        return stack.cli.stack
    stack.cli.remove()
    return None
