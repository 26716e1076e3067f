"""`lab.console._connect`: a console socket deeper than a unix socket path may be is reached, from many
threads at once, without ever changing the process's working directory."""

from __future__ import annotations

import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lab.common import LabError
from lab.console import _connect


def deep_socket(tmp_path: Path) -> tuple[Path, socket.socket]:
    directory = tmp_path / ("d" * 60) / ("e" * 60)
    directory.mkdir(parents=True)
    path = directory / "console.sock"
    assert len(str(path)) > 108  # too long for sun_path as it is
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    fd = os.open(directory, os.O_PATH | os.O_DIRECTORY)
    try:
        server.bind(f"/proc/self/fd/{fd}/{path.name}")
    finally:
        os.close(fd)
    server.listen(64)
    return path, server


def test_many_threads_connect_and_the_working_directory_stays(tmp_path: Path) -> None:
    path, server = deep_socket(tmp_path)
    accepted: list[socket.socket] = []

    def accept() -> None:
        for _ in range(40):
            accepted.append(server.accept()[0])

    acceptor = threading.Thread(target=accept)
    acceptor.start()
    before = os.getcwd()
    with ThreadPoolExecutor(max_workers=8) as pool:
        socks = list(pool.map(lambda _: _connect(path, 5), range(40)))
    acceptor.join(timeout=10)
    assert os.getcwd() == before and len(accepted) == 40
    for s in [*socks, *accepted, server]:
        s.close()


def test_a_missing_socket_is_a_lab_error_naming_it(tmp_path: Path) -> None:
    before = os.getcwd()
    with pytest.raises(LabError, match=r"console\.sock"):
        _connect(tmp_path / "gone" / "console.sock", 1)
    assert os.getcwd() == before
