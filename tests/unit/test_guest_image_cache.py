"""Two checkouts building the testbed's guest at once into the shared cache: one builds, the other waits
for it and reuses its result; the lock is the one `scripts/install-pulumi` takes."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from lab import image

BUSYBOX = Path("/bin/busybox")


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("CLOUDREPO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(image, "kernel_package", lambda: ("linux-image-test", "1"))
    monkeypatch.setattr(image, "BUSYBOX", BUSYBOX if BUSYBOX.is_file() else Path("/bin/sh"))
    return tmp_path / "cache"


def slow_build(calls: list[str]) -> Callable[[str, str, Path], None]:
    """A stand-in for the guest build (no apt download): records the build, takes a while, finishes."""

    def build(pkg: str, version: str, out: Path) -> None:
        calls.append(f"{pkg}={version}")
        time.sleep(0.3)
        out.mkdir(parents=True)
        (out / "vmlinuz").write_bytes(b"kernel")
        (out / "initrd.gz").write_bytes(b"initrd")
        (out / ".complete").touch()

    return build


def test_concurrent_builds_build_once(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(image, "_build", slow_build(calls))
    results: list[dict[str, str]] = []
    threads = [threading.Thread(target=lambda: results.append(image.build())) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert calls == ["linux-image-test=1"]
    key = image.image_key("linux-image-test", "1")
    built = cache / f"guest-{key}"
    assert results == [{"kernel": str(built / "vmlinuz"), "initrd": str(built / "initrd.gz")}] * 3


def test_a_build_waits_for_a_lock_held_elsewhere(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(image, "_build", slow_build(calls))
    cache.mkdir(parents=True)
    holder = subprocess.Popen(
        ["flock", str(cache / "build.lock"), "sh", "-c", "echo held; read _"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    done = threading.Event()

    def build() -> None:
        image.build()
        done.set()

    worker = threading.Thread(target=build)
    worker.start()
    try:
        assert not done.wait(1.0), "the build did not wait for the cache's lock"
        assert calls == []
    finally:
        holder.communicate("\n", timeout=10)
    worker.join(10)
    assert done.is_set() and calls == ["linux-image-test=1"]
