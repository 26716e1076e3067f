"""The cloud image's cache (`lab.cloud_image`): built once per recipe, apt sources and package versions,
under the cache's lock; a new package version or source is a new image; mmdebstrap gets an argv."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from lab import cloud_image

VERSIONS = {p: "1.0" for p in cloud_image.PACKAGES}


@pytest.fixture
def sources(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    src = tmp_path / "debian.sources"
    src.write_text("Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\n")
    monkeypatch.setenv("CLOUDREPO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cloud_image, "apt_sources", lambda: [src])
    monkeypatch.setattr(cloud_image, "codename", lambda: "bookworm")
    monkeypatch.setattr(cloud_image, "candidates", lambda packages: dict(VERSIONS))
    return src


def test_concurrent_builds_build_once(sources: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []

    def build(suite: str, srcs: list[Path], out: Path) -> None:
        calls.append(out)
        time.sleep(0.3)
        out.mkdir(parents=True)
        (out / ".complete").touch()

    monkeypatch.setattr(cloud_image, "_build", build)
    results: list[dict[str, str]] = []
    threads = [threading.Thread(target=lambda: results.append(cloud_image.build())) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    out = sources.parent / "cache" / f"cloud-{cloud_image.image_key('bookworm', [sources], VERSIONS)}"
    assert calls == [out]
    assert (
        results
        == [
            {
                "image": str(out / "disk.qcow2"),
                "kernel": str(out / "vmlinuz"),
                "initrd": str(out / "initrd.img"),
                "append": cloud_image.APPEND,
            }
        ]
        * 3
    )


def test_the_key_follows_versions_sources_and_suite(sources: Path) -> None:
    key = cloud_image.image_key("bookworm", [sources], VERSIONS)
    assert cloud_image.image_key("bookworm", [sources], VERSIONS) == key
    assert cloud_image.image_key("bookworm", [sources], {**VERSIONS, "cloud-init": "1.1"}) != key
    assert cloud_image.image_key("trixie", [sources], VERSIONS) != key
    sources.write_text(sources.read_text().replace("bookworm", "bookworm bookworm-updates"))
    assert cloud_image.image_key("bookworm", [sources], VERSIONS) != key


def test_mmdebstrap_gets_the_packages_the_suite_and_the_machines_sources(sources: Path) -> None:
    argv = cloud_image.mmdebstrap_argv("bookworm", [sources], Path("/tmp/root"))
    assert argv[0] == "mmdebstrap" and argv[-3:] == ["bookworm", "/tmp/root", str(sources)]
    assert f"--include={','.join(cloud_image.PACKAGES)}" in argv
    assert {"cloud-init", "openssh-server", "systemd-sysv"} <= set(cloud_image.PACKAGES)
