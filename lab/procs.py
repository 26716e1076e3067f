"""Processes of the testbed: pid files, ending by pid, namespace inodes.

Nothing here ever selects a process by its name alone: a process is ended because its pid is in one of
our pid files (and its command line still matches), or because it lives in a namespace the testbed made.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path


def read_pid(pidfile: Path) -> int | None:
    try:
        text = pidfile.read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return int(text) if text.isdigit() else None


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def pidfile_process(pidfile: Path, expect: str) -> int | None:
    """The live pid of a pid file whose command line still contains ``expect`` (guards against pid reuse)."""
    pid = read_pid(pidfile)
    if pid is None or not alive(pid):
        return None
    if not any(expect in part for part in cmdline(pid)):
        return None
    return pid


def terminate(pids: Iterable[int], *, group: bool = False, grace: float = 3.0) -> None:
    """SIGTERM each pid (or its process group), wait up to ``grace`` seconds, then SIGKILL survivors."""
    targets = [pid for pid in set(pids) if pid > 1 and pid != os.getpid()]
    for pid in targets:
        try:
            if group:
                os.killpg(pid, signal.SIGTERM)
            else:
                os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(pid) for pid in targets):
        time.sleep(0.05)
    for pid in targets:
        if alive(pid):
            try:
                if group:
                    os.killpg(pid, signal.SIGKILL)
                else:
                    os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(pid) for pid in targets):
        time.sleep(0.05)


def stop_pidfile(pidfile: Path, expect: str, *, group: bool = False) -> None:
    pid = pidfile_process(pidfile, expect)
    if pid is not None:
        terminate([pid], group=group)
    pidfile.unlink(missing_ok=True)


def ns_inode(pid: int, kind: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/{kind}").st_ino
    except OSError:
        return None


def path_inode(path: str | Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def all_pids() -> list[int]:
    return sorted(int(name) for name in os.listdir("/proc") if name.isdigit())


def sshd_running() -> bool:
    """True while any sshd runs on the machine (every sshd needs /run/sshd, its privilege separation
    directory: another testbed's, or the system's)."""
    return any(Path(argv[0]).name == "sshd" for argv in map(cmdline, all_pids()) if argv)


def pids_in_namespaces(net: set[int], mnt: set[int]) -> list[int]:
    """Every process (but this one) whose network namespace is in ``net`` or mount namespace in ``mnt``."""
    me = os.getpid()
    found = []
    for pid in all_pids():
        if pid in (1, me):
            continue
        net_ino = ns_inode(pid, "net")
        mnt_ino = ns_inode(pid, "mnt")
        if (net_ino is not None and net_ino in net) or (mnt_ino is not None and mnt_ino in mnt):
            found.append(pid)
    return found


def spawn_daemon(argv: list[str], pidfile: Path, *, log: Path | None = None, cwd: Path | None = None) -> int:
    """Start a long-running process in its own session and record its pid."""
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            cwd=cwd,
        )
    finally:
        if log:
            out.close()  # type: ignore[union-attr]
    pidfile.write_text(f"{proc.pid}\n")
    return proc.pid


def processes_viewing(directory: Path, as_path: str = "/run/netns") -> list[int]:
    """Processes whose ``as_path`` is ``directory`` (a bind mount in their mount namespace)."""
    try:
        st = os.stat(directory)
    except OSError:
        return []
    key = (st.st_dev, st.st_ino)
    found = []
    for pid in all_pids():
        if pid in (1, os.getpid()):
            continue
        try:
            view = os.stat(f"/proc/{pid}/root{as_path}")
        except OSError:
            continue
        if (view.st_dev, view.st_ino) == key:
            found.append(pid)
    return found
