"""The SSH layer against an in-process server: config, host keys, pooling, threads, errors, counters."""

from __future__ import annotations

import dataclasses
import json
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest

from components import config as config_model
from tests.cfgkit import raw_config, with_changes
from tests.unit.providers.fakesshd import FakeSshd, new_key, pem, write_known_hosts
from transport import runner, ssh, ssh_pool, ssh_stats
from transport.script import probe, run
from transport.ssh_settings import settings_from_config
from vocabulary.errors import (
    CommandTimeout,
    ConfigError,
    HostKeyError,
    HostUnreachable,
    LockTimeout,
    SshError,
    StepFailed,
)
from vocabulary.specs import Endpoint

HOST_KEY = new_key()
CLIENT_KEY = new_key()


@pytest.fixture
def server() -> Iterator[FakeSshd]:
    srv = FakeSshd(HOST_KEY, CLIENT_KEY).start()
    yield srv
    srv.stop()


def config(tmp_path: Path, **over: Any) -> dict[str, Any]:
    raw = {"user": "tester", "knownHostsPath": str(tmp_path / "known_hosts"), "sudo": False}
    raw.update(over)
    return {"cloudrepo:ssh": json.dumps(raw), "cloudrepo:sshPrivateKey": pem(CLIENT_KEY)}


@pytest.fixture
def configured(tmp_path: Path, server: FakeSshd) -> Iterator[Endpoint]:
    write_known_hosts(tmp_path / "known_hosts", server.port, HOST_KEY)
    ssh.configure(config(tmp_path))
    # locked scripts run locally here: their lock lives in the test's directory, not /var/lib/cloudrepo
    ssh.install(dataclasses.replace(ssh.settings(), lock_file=str(tmp_path / "state" / "lock")))
    ssh.close_all()
    ssh.reset_stats()
    yield Endpoint(name="fake", address="127.0.0.1", port=server.port)
    ssh.close_all()


def test_one_round_trip_per_script_and_the_connection_is_reused(
    configured: Endpoint, server: FakeSshd
) -> None:
    for i in range(3):
        res = ssh.run_script(configured, [probe("a", "echo", f"call {i}"), probe("b", "printf", "%s", "x y")])
        assert res.out("a") == f"call {i}\n" and res.out("b") == "x y"
    assert server.connections == 1
    # one remote process ran the 3 scripts
    assert server.commands == [runner.command(False, ssh.settings().lock_file)]
    st = ssh.stats()
    assert (st["connections_opened"], st["sessions_opened"], st["commands_run"]) == (1, 1, 3)


def test_the_runner_gets_the_lock_file_as_its_argument() -> None:
    assert runner.command(False) == shlex.join(["sh", "-c", runner.PROGRAM, "sh", "/var/lib/cloudrepo/lock"])
    assert runner.command(True, "/tmp/x y/lock") == "sudo -n " + shlex.join(
        ["sh", "-c", runner.PROGRAM, "sh", "/tmp/x y/lock"]
    )


def test_four_threads_share_one_connection(configured: Endpoint, server: FakeSshd) -> None:
    results: dict[int, str] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for _ in range(3):
                results[i] = ssh.run_script(configured, [probe("id", "echo", str(i))]).out("id")
        except BaseException as exc:  # collected and re-raised by the test
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert results == {i: f"{i}\n" for i in range(4)}
    assert server.connections == 1
    assert ssh.stats()["commands_run"] == 12


def test_failed_step_names_host_step_status_and_stderr(configured: Endpoint) -> None:
    with pytest.raises(StepFailed) as err:
        ssh.run_script(
            configured, [run("ok", "true"), run("create tap", "sh", "-c", "echo 'File exists' >&2; exit 2")]
        )
    assert str(err.value) == "fake: step 'create tap' failed with exit status 2: File exists"


def test_unknown_host_key_is_refused_before_any_command(tmp_path: Path, server: FakeSshd) -> None:
    (tmp_path / "known_hosts").write_text("")
    ssh.configure(config(tmp_path))
    ssh.close_all()
    with pytest.raises(HostKeyError) as err:
        ssh.run_script(Endpoint(name="fake", address="127.0.0.1", port=server.port), [run("x", "true")])
    assert "UNKNOWN" in str(err.value) and str(err.value).startswith("fake: host key of 127.0.0.1:")
    assert server.commands == []


def test_changed_host_key_is_refused_before_any_command(tmp_path: Path, server: FakeSshd) -> None:
    write_known_hosts(tmp_path / "known_hosts", server.port, new_key())
    ssh.configure(config(tmp_path))
    ssh.close_all()
    with pytest.raises(HostKeyError, match="CHANGED") as err:
        ssh.run_script(Endpoint(name="fake", address="127.0.0.1", port=server.port), [run("x", "true")])
    assert server.commands == []
    # both keys named as OpenSSH names them (`ssh-keygen -l`), so they can be compared with `ssh-keyscan`
    got = openssh_fingerprint(tmp_path, HOST_KEY)
    assert f"got ecdsa-sha2-nistp256 {got}, " in str(err.value), str(err.value)
    wanted = subprocess.run(
        ["ssh-keygen", "-lf", str(tmp_path / "known_hosts")], capture_output=True, text=True, check=True
    ).stdout.split()[1]
    assert f"has ecdsa-sha2-nistp256 {wanted}; refusing" in str(err.value), str(err.value)
    assert got != wanted and got.startswith("SHA256:") and not got.endswith("=")


def openssh_fingerprint(tmp_path: Path, key: paramiko.PKey) -> str:
    pub = tmp_path / "key.pub"
    pub.write_text(f"{key.get_name()} {key.get_base64()}\n")
    out = subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True, check=True).stdout
    return out.split()[1]


def test_key_for_another_port_does_not_count(tmp_path: Path, server: FakeSshd) -> None:
    # known_hosts lookups for non-22 ports use [host]:port
    write_known_hosts(tmp_path / "known_hosts", 22, HOST_KEY)
    ssh.configure(config(tmp_path))
    ssh.close_all()
    with pytest.raises(HostKeyError, match="UNKNOWN"):
        ssh.run_script(Endpoint(name="fake", address="127.0.0.1", port=server.port), [run("x", "true")])


def test_wrong_client_key_is_unreachable_not_retried_forever(tmp_path: Path, server: FakeSshd) -> None:
    write_known_hosts(tmp_path / "known_hosts", server.port, HOST_KEY)
    cfg = config(tmp_path)
    cfg["cloudrepo:sshPrivateKey"] = pem(new_key())
    ssh.configure(cfg)
    ssh.close_all()
    with pytest.raises(HostUnreachable, match="authentication as 'tester'"):
        ssh.run_script(Endpoint(name="fake", address="127.0.0.1", port=server.port), [run("x", "true")])
    assert server.connections == 1


def test_closed_port_fails_after_bounded_retries(
    configured: Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    ssh.install(dataclasses.replace(ssh.settings(), connect_attempts=2))
    sock = __import__("socket").socket()
    sock.bind(("127.0.0.1", 0))
    free_port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(HostUnreachable, match="after 2 attempts"):
        ssh.run_script(Endpoint(name="gone", address="127.0.0.1", port=free_port), [run("x", "true")])
    assert ssh.stats()["connect_attempts"] == 2


def test_command_timeout_names_the_running_step(configured: Endpoint) -> None:
    with pytest.raises(CommandTimeout) as err:
        ssh.run_script(configured, [run("quick", "true"), run("slow", "sleep", "5")], timeout=0.5)
    assert str(err.value) == "fake: step 'slow' still running after 0.5s (timed out)"


def test_a_dropped_connection_is_replaced(configured: Endpoint, server: FakeSshd) -> None:
    ssh.run_script(configured, [run("x", "true")])
    for t in server._transports:
        t.close()
    time.sleep(0.2)
    assert ssh.run_script(configured, [probe("y", "echo", "again")]).out("y") == "again\n"
    assert server.connections == 2


def test_stats_dump_to_the_env_file(
    configured: Endpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "stats-{pid}.json"
    monkeypatch.setenv(ssh_stats.STATS_ENV, str(target))
    ssh.run_script(configured, [run("x", "true")])
    files = list(tmp_path.glob("stats-*.json"))
    assert len(files) == 1
    data = json.loads(files[0].read_text())
    assert data["commands_run"] == 1 and data["connections_opened"] == 1


# ---- the runner: one remote process per pooled channel ---------------------------------------------------


def test_the_runner_command_is_constant_and_sudo_wraps_it() -> None:
    assert runner.command(True) == "sudo -n " + runner.command(False)


def test_a_locked_script_holds_the_lock_and_an_unlocked_one_does_not(configured: Endpoint) -> None:
    held = probe("held", "flock", "-n", ssh.settings().lock_file, "true")
    assert ssh.run_script(configured, [held], locked=True).status("held") == 1
    assert ssh.run_script(configured, [held]).status("held") == 0
    assert ssh.run_script(configured, [held], locked=True).status("held") == 1
    assert ssh.stats()["sessions_opened"] == 1


ODD = "tab\there é ✓ \x01\x7f 'q' \"dq\" $HOME `x` \\ @@:begin:7\n@@cafe:rc:0\n"


def test_odd_bytes_and_big_scripts_are_framed_exactly(configured: Endpoint) -> None:
    res = ssh.run_script(configured, [probe("odd", "printf", "%s", ODD)])
    assert res.out("odd") == ODD
    big = "x" * 100_000 + ODD  # a 100 KB script, then another through the same runner
    for n in (1, 2):
        res = ssh.run_script(configured, [probe("big", "sh", "-c", 'printf %s "$1" | wc -c', "sh", big)])
        assert int(res.out("big")) == len(big.encode())
        assert ssh.run_script(configured, [probe("after", "echo", str(n))]).out("after") == f"{n}\n"
    for size in (511, 512, 513, 1023, 1024):  # around the reader's block size (the whole frame counts)
        arg = "y" * size
        assert ssh.run_script(configured, [probe("s", "printf", "%s", arg)]).out("s") == arg
    assert ssh.stats()["sessions_opened"] == 1


def test_output_without_a_final_newline_and_stderr_of_the_script(configured: Endpoint) -> None:
    res = ssh.run_script(
        configured, [probe("a", "printf", "no newline"), probe("b", "sh", "-c", "printf err >&2; printf x")]
    )
    assert (res.out("a"), res.out("b")) == ("no newline", "x")
    with pytest.raises(StepFailed) as err:
        ssh.run_script(configured, [run("bad", "sh", "-c", "printf 'no newline on stderr' >&2; exit 3")])
    assert str(err.value) == "fake: step 'bad' failed with exit status 3: no newline on stderr"


def test_a_step_reading_stdin_cannot_eat_the_next_frame(configured: Endpoint) -> None:
    assert ssh.run_script(configured, [probe("cat", "sh", "-c", "cat; echo done")]).out("cat") == "done\n"
    assert ssh.run_script(configured, [probe("n", "echo", "next")]).out("n") == "next\n"


def test_a_timeout_drops_the_runner_and_the_next_call_works(configured: Endpoint, server: FakeSshd) -> None:
    ssh.run_script(configured, [run("warm", "true")])
    with pytest.raises(CommandTimeout) as err:
        ssh.run_script(configured, [run("quick", "true"), run("slow", "sleep", "3")], timeout=0.5)
    assert str(err.value) == "fake: step 'slow' still running after 0.5s (timed out)"
    assert ssh.run_script(configured, [probe("y", "echo", "after")]).out("y") == "after\n"
    st = ssh.stats()
    assert (st["connections_opened"], st["sessions_opened"]) == (1, 2)
    assert server.connections == 1


def test_a_killed_runner_is_replaced(configured: Endpoint, server: FakeSshd) -> None:
    ssh.run_script(configured, [run("x", "true")])
    (proc,) = server.procs
    server.kill(proc)  # its end may not have reached the client yet when the next call sends
    assert ssh.run_script(configured, [probe("y", "echo", "again")]).out("y") == "again\n"
    server.kill(server.procs[-1])
    time.sleep(0.2)  # and when its end is already known
    assert ssh.run_script(configured, [probe("z", "echo", "third")]).out("z") == "third\n"
    st = ssh.stats()
    assert (st["connections_opened"], st["sessions_opened"], st["commands_run"]) == (1, 3, 3)


def test_a_runner_dying_mid_script_is_unreachable_mid_script(configured: Endpoint, server: FakeSshd) -> None:
    ssh.run_script(configured, [run("x", "true")])
    (proc,) = server.procs
    # the step kills the runner (its parent's parent: sh FILE is the runner's child) and the script with it
    kill = run("kill", "sh", "-c", "kill -9 $(ps -o ppid= -p $PPID) $PPID")
    with pytest.raises(HostUnreachable, match="mid-script"):
        ssh.run_script(configured, [probe("a", "echo", "started"), kill, run("never", "true")])
    assert proc.wait(5) == 128 + signal.SIGKILL  # the session shell reports its runner killed
    assert ssh.run_script(configured, [probe("y", "echo", "ok")]).out("y") == "ok\n"


def test_a_runner_that_cannot_start_is_an_error_naming_the_cause(
    configured: Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = "echo 'sudo: a password is required' >&2; exit 1"
    monkeypatch.setattr(runner, "command", lambda sudo, lock: refused)
    with pytest.raises(SshError, match="exited 1: sudo: a password is required"):
        ssh.run_script(configured, [run("x", "true")])


def test_at_most_four_runners_per_host_each_serving_one_call(configured: Endpoint, server: FakeSshd) -> None:
    errors: list[BaseException] = []
    seen: list[str] = []

    def work(i: int) -> None:
        try:
            for _ in range(3):
                # each script names its runner's process: no two calls run in one runner at once
                res = ssh.run_script(configured, [probe("pid", "sh", "-c", "echo $PPID; sleep 0.2")])
                seen.append(res.out("pid"))
        except BaseException as exc:  # collected and re-raised by the test
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(seen) == 18
    assert ssh.stats()["sessions_opened"] == len(server.procs) <= ssh_pool.MAX_RUNNERS
    assert server.connections == 1


def test_round_trip_timing_is_off_by_default_and_one_line_per_round_trip_when_on(
    configured: Endpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ssh_stats.TIMING_ENV, raising=False)
    ssh.run_script(configured, [run("x", "true")])
    assert list(tmp_path.glob("timing-*")) == []
    monkeypatch.setenv(ssh_stats.TIMING_ENV, str(tmp_path / "timing-{pid}.jsonl"))
    before = time.time()
    ssh.run_script(configured, [run("a", "true"), probe("b", "echo", "x")])
    ssh.run_script(configured, [run("c", "true")], locked=True, holder="s1")
    (path,) = tmp_path.glob("timing-*.jsonl")
    recs = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["host"], r["steps"], r["locked"], r["read"], r["status"]) for r in recs] == [
        ("fake", 2, False, False, 0),
        ("fake", 2, True, False, 0),  # the holder note is a step
    ]
    ssh.run_script(configured, [probe("p", "true")])
    assert json.loads(path.read_text().splitlines()[-1])["read"] is True
    for r in recs:
        assert before <= r["start"] <= r["runner"] <= r["end"] <= time.time()
        h0, h1 = r["host_span"]  # the fake server runs scripts on this machine's clock
        assert r["start"] * 1e9 <= h0 <= h1 <= r["end"] * 1e9


def test_stats_dumps_from_many_threads_never_fail_an_operation(
    configured: Endpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ssh_stats.STATS_ENV, str(tmp_path / "stats-{pid}.json"))
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(50):
                ssh_stats.dump_stats()
        except BaseException as exc:  # collected and re-raised by the test
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert len(list(tmp_path.glob("stats-*.json"))) == 1
    monkeypatch.setenv(ssh_stats.STATS_ENV, str(tmp_path / "missing-dir" / "stats-{pid}.json"))
    assert ssh.run_script(configured, [probe("x", "echo", "ok")]).out("x") == "ok\n"


# ---- configuration -------------------------------------------------------------------------------------


def test_relative_paths_resolve_against_the_project_dir(tmp_path: Path) -> None:
    (tmp_path / ".lab").mkdir()
    (tmp_path / ".lab" / "known_hosts").write_text("")
    (tmp_path / ".lab" / "id").write_text(pem(CLIENT_KEY))
    raw = {"user": "root", "privateKeyPath": ".lab/id", "knownHostsPath": ".lab/known_hosts", "sudo": True}
    s = settings_from_config({"cloudrepo:ssh": json.dumps(raw)}, base=tmp_path)
    assert s.known_hosts == tmp_path / ".lab" / "known_hosts"
    assert s.sudo is True and s.user == "root"
    assert s.pkey == CLIENT_KEY


def test_tilde_expands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "kh").write_text("")
    s = settings_from_config(
        {"cloudrepo:ssh": {"user": "u", "knownHostsPath": "~/kh"}, "cloudrepo:sshPrivateKey": pem(CLIENT_KEY)}
    )
    assert s.known_hosts == tmp_path / "kh"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (None, "stack config cloudrepo:ssh is not set"),
        ("{nope", "is not a JSON object"),
        (json.dumps({"knownHostsPath": "/dev/null"}), "cloudrepo:ssh.user: required"),
        (json.dumps({"user": "u"}), "cloudrepo:ssh.knownHostsPath: required"),
        (json.dumps({"user": "u", "knownHostsPath": "/no/kh", "privateKeyPath": "k"}), "not a regular file"),
        (json.dumps({"user": "Root!", "knownHostsPath": "/dev/null"}), "is not a login name"),
        (json.dumps({"user": "u", "knownHostsPath": "/dev/null", "commandTimeout": 0}), "commandTimeout"),
        (json.dumps({"user": "u", "knownHostsPath": "kh", "knownHosts": "x"}), "knownHosts: unknown key"),
    ],
)
def test_config_errors(raw: Any, message: str, tmp_path: Path) -> None:
    cfg = {} if raw is None else {"cloudrepo:ssh": raw}
    with pytest.raises(ConfigError, match=message):
        settings_from_config(cfg, base=tmp_path)


@pytest.mark.parametrize(
    ("ssh_in", "problem"),
    [
        ({"user": "Root!", "knownHostsPath": "kh", "privateKeyPath": "k"}, "is not a login name"),
        ({"user": "u", "knownHostsPath": "kh"}, "no SSH key configured"),
        ({"user": "u", "knownHostsPath": "kh", "privateKeyPath": "k", "sudoo": True}, "unknown key"),
        ({"user": "u", "knownHostsPath": "", "privateKeyPath": "k"}, "not a usable file path"),
        ({"user": "u", "knownHostsPath": "kh", "privateKeyPath": "k", "connectTimeout": -1}, "Timeout"),
    ],
)
def test_the_program_and_the_provider_refuse_the_same_ssh_config(
    ssh_in: dict[str, Any], problem: str, tmp_path: Path
) -> None:
    """One parser: what `pulumi preview` refuses, the provider refuses too, and for the same reason."""
    with pytest.raises(config_model.ConfigError) as at_preview:
        config_model.load_config(raw_config(with_changes(ssh=ssh_in)), "dev")
    assert any("cloudrepo:ssh" in p and problem in p for p in at_preview.value.problems), at_preview.value
    with pytest.raises(ConfigError, match=problem):
        settings_from_config({"cloudrepo:ssh": json.dumps(ssh_in)}, base=tmp_path)


def test_key_never_appears_in_repr(tmp_path: Path) -> None:
    (tmp_path / "kh").write_text("")
    s = settings_from_config(
        {
            "cloudrepo:ssh": {"user": "u", "knownHostsPath": str(tmp_path / "kh")},
            "cloudrepo:sshPrivateKey": pem(CLIENT_KEY),
        }
    )
    assert "PRIVATE" not in repr(s) and "pkey" not in repr(s)


def test_bad_pem_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "kh").write_text("")
    with pytest.raises(ConfigError, match="secret cloudrepo:sshPrivateKey is not a usable"):
        settings_from_config(
            {
                "cloudrepo:ssh": {"user": "u", "knownHostsPath": str(tmp_path / "kh")},
                "cloudrepo:sshPrivateKey": "x",
            }
        )


def test_unconfigured_process_says_so() -> None:
    saved = ssh._settings
    ssh._settings = None
    try:
        with pytest.raises(ConfigError, match="not configured"):
            ssh.settings()
    finally:
        ssh._settings = saved


_ = paramiko  # the fake server is paramiko too


def test_a_locked_script_reports_how_long_it_waited_for_the_lock(configured: Endpoint) -> None:
    lock = Path(ssh.settings().lock_file)
    lock.parent.mkdir(parents=True, exist_ok=True)
    free = ssh.run_script(configured, [run("c", "true")], locked=True, holder="s1")
    assert 0 <= free.lock_wait < 0.5
    assert ssh.run_script(configured, [run("c", "true")]).lock_wait == 0.0  # unlocked: no wait
    ssh.waited.take()
    holder = subprocess.Popen(["flock", str(lock), "sleep", "1.2"])
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(["flock", "-n", str(lock), "true"]).returncode == 0:
            assert time.monotonic() < deadline, "the holder never took the lock"
            time.sleep(0.01)
        held = ssh.run_script(configured, [run("c", "true")], locked=True, holder="s1")
    finally:
        holder.wait(timeout=30)
    assert 0.5 < held.lock_wait < 10, held.lock_wait
    assert ssh.waited.take() == pytest.approx(held.lock_wait)  # this thread's, since its last take
    assert ssh.waited.take() == 0.0
    assert ssh.stats()["lock_waits"] == 2
    assert ssh.stats()["lock_wait_seconds"] == pytest.approx(held.lock_wait + free.lock_wait, abs=1e-3)


def test_the_lock_wait_is_read_from_the_holder_notes_nanoseconds() -> None:
    assert ssh.lock_wait("1500000000\n") == 1.5
    assert ssh.lock_wait("") == 0.0  # a host whose `date` has no %N prints nothing
    assert ssh.lock_wait("12x\n") == 0.0


def test_a_lock_that_stays_taken_counts_as_the_whole_wait(
    configured: Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ssh, "LOCK_WAIT_SECONDS", 1)
    lock = Path(ssh.settings().lock_file)
    lock.parent.mkdir(parents=True, exist_ok=True)
    ssh.waited.take()
    holder = subprocess.Popen(["flock", str(lock), "sleep", "4"])
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(["flock", "-n", str(lock), "true"]).returncode == 0:
            assert time.monotonic() < deadline, "the holder never took the lock"
            time.sleep(0.01)
        with pytest.raises(LockTimeout):
            ssh.run_script(configured, [run("c", "true")], locked=True, holder="s1")
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert ssh.waited.take() == 1.0
