"""Link impairment and capture on the testbed, through the real engine and real QEMU guests (TCG).

`links[].netem.rate`: a transfer between two guests on the shaped link runs at about the rate, one on the
other link is clearly faster; a qdisc removed by hand is drift on `refresh` and back after `up`; an edit of
the rate is an update of the two shapes alone (no TAP made again, no VLAN moved); removing the key restores
full speed. A netem key this kernel cannot apply (no `sch_netem`) is refused at `up` before any host change.
The delay test runs where the kernel has netem. `cloudrepo capture` writes the pings of one link as pcap
(read back here record by record), and a capture stopped by Ctrl-C leaves no tcpdump on the worker.
"""

from __future__ import annotations

import io
import json
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dpkt
import pytest
import yaml

from lab import slicecheck
from lab.common import host_ns
from tests.integration.clikit import Checkout
from tests.integration.e2ekit import drift_by_name, guest_launch, qemu_tcg
from tests.integration.slicekit import SliceStack, failure, planned_steps
from tests.labfixtures import Testbed, assert_scan_equal

SLICE = "e2e-netem"
POOL = 720
RATE_KBIT = 1000
BLOB_KIB = 512
SHAPED, PLAIN = ("8101.eth1", "8102.eth1"), ("8101.eth2", "8103.eth1")


def netem_missing() -> str | None:
    """Why this kernel cannot apply a netem (the testbed's hosts share it), or None."""
    probe = subprocess.run(
        ["unshare", "-n", "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
        capture_output=True,
        text=True,
        check=False,
    )
    return None if probe.returncode == 0 else (probe.stderr.strip() or f"exit {probe.returncode}")


def links(netem: dict[str, str] | None) -> list[Any]:
    shaped: dict[str, Any] = {"a": SHAPED[0], "b": SHAPED[1]}
    if netem is not None:
        shaped["netem"] = netem
    return [shaped, list(PLAIN)]


def vms() -> list[dict[str, Any]]:
    boot = guest_launch()
    return [
        {"id": 8101, "worker": "worker1", "dataInterfaces": 2, "launch": boot},
        {"id": 8102, "worker": "worker2", "dataInterfaces": 1, "launch": boot},
        {"id": 8103, "worker": "worker2", "dataInterfaces": 1, "launch": boot},
    ]


def reconfigure(stack: SliceStack, netem: dict[str, str] | None) -> None:
    config = yaml.safe_load(stack.config_file.read_text())["config"]
    config["cloudrepo:slice"]["links"] = links(netem)
    stack.write_config(config)


def ip(outputs: dict[str, Any], end: str) -> str:
    vm, iface = end.split(".")
    return str(outputs["vms"][vm]["interfaces"][iface]["ip"])


def guest(vm: str, script: str, timeout: float = 120) -> str:
    res = slicecheck.guest_exec(vm, "sh", "-c", script, timeout=timeout)
    assert res.returncode == 0, f"guest {vm}: {script}\n{res.stdout}"
    return res.stdout


def kbit_per_s(client: str, server_ip: str) -> float:
    """The guest `client` fetches the server's blob over HTTP; kbit/s, timed in the guest."""
    out = guest(
        client,
        "a=$(cut -d' ' -f1 /proc/uptime); "
        f"timeout 100 wget -q -O /dev/null http://{server_ip}:8080/blob || exit 1; "
        "b=$(cut -d' ' -f1 /proc/uptime); echo \"took $a $b\"",
    )
    start, end = (float(x) for x in out.split("took ", 1)[1].split()[:2])
    return BLOB_KIB * 1024 * 8 / 1000 / max(end - start, 0.01)


def best_kbit_per_s(client: str, server_ip: str, floor: float) -> float:
    """The best of up to three fetches, stopping at the first above `floor`: an unshaped link's rate is a
    floor only the host's load can push a fetch under (two TCG guests on 2 shared cores); a shaped one
    never exceeds its rate, however often it is tried."""
    best = 0.0
    for _ in range(3):
        best = max(best, kbit_per_s(client, server_ip))
        if best > floor:
            break
    return best


def qdisc(testbed: Testbed, worker: str, tap: str) -> dict[str, Any]:
    out = testbed.run(worker, f"tc -j qdisc show dev {tap}")[1]
    return next(q for q in json.loads(out) if q.get("root"))


def ifindex(testbed: Testbed, worker: str, tap: str) -> str:
    return testbed.run(worker, f"cat /sys/class/net/{tap}/ifindex")[1].strip()


def tcpdumps(worker: str) -> list[int]:
    """The tcpdump processes in the worker's network namespace."""
    pids = subprocess.run(["ip", "netns", "pids", host_ns(worker)], capture_output=True, text=True).stdout
    found = []
    for pid in pids.split():
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "tcpdump":
                found.append(int(pid))
        except OSError:
            continue
    return found


def pcap_records(data: bytes) -> list[bytes]:
    """The packets of a pcap file as `tcpdump -w` writes it, read by dpkt: each an Ethernet frame."""
    reader = dpkt.pcap.Reader(io.BytesIO(data))
    assert reader.datalink() == dpkt.pcap.DLT_EN10MB, reader.datalink()
    return [bytes(frame) for _ts, frame in reader]


def icmp_ends(frame: bytes) -> tuple[str, str] | None:
    """(source, destination) of an ICMP-over-IPv4 Ethernet frame (parsed by dpkt), else None."""
    packet = dpkt.ethernet.Ethernet(frame).data
    if not isinstance(packet, dpkt.ip.IP) or not isinstance(packet.data, dpkt.icmp.ICMP):
        return None
    return socket.inet_ntoa(packet.src), socket.inet_ntoa(packet.dst)


def start_capture(op: Checkout, *args: str) -> subprocess.Popen[str]:
    proc = op.popen("capture", SLICE, *args)
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        seen.append(line)
        if "listening on" in line:
            return proc
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"capture did not start: {''.join(seen)}")


@pytest.fixture
def deployed(
    slice_stack: Callable[..., SliceStack], testbed: Testbed, slice_backend: Path
) -> tuple[SliceStack, dict[str, Any], Checkout]:
    stack = slice_stack(SLICE, POOL, vms(), links({"rate": f"{RATE_KBIT}kbit"}), extra=qemu_tcg())
    stack.up()
    outputs = stack.outputs()
    slicecheck.use_launched(outputs)
    wanted = {tuple(end.split(".")): ip(outputs, end) for end in (*SHAPED, *PLAIN)}
    leases = slicecheck.launched_leases(wanted, timeout=300)  # type: ignore[arg-type]
    assert {k: v[0] for k, v in leases.items()} == wanted, leases
    server = guest(
        "8101",
        f"mkdir -p /tmp/www && dd if=/dev/zero of=/tmp/www/blob bs=1024 count={BLOB_KIB} 2>/dev/null && "
        "httpd -p 8080 -h /tmp/www && echo served",
    )
    assert "served" in server
    op = Checkout(
        project=stack.cli.project_dir, backend_env={"PULUMI_BACKEND_URL": f"file://{slice_backend}"}
    )
    return stack, outputs, op


def test_rate_drift_edit_and_removal(
    deployed: tuple[SliceStack, dict[str, Any], Checkout], testbed: Testbed
) -> None:
    stack, outputs, op = deployed
    shaped_taps = (("worker1", "tap_8101_eth1"), ("worker2", "tap_8102_eth1"))
    assert outputs["links"][0]["netem"] == {"rate": "1mbit"} and outputs["links"][0]["qdisc"] == "tbf"
    for worker, tap in shaped_taps:  # both ends: both directions
        q = qdisc(testbed, worker, tap)
        assert q["kind"] == "tbf" and q["options"]["rate"] == RATE_KBIT * 125, q
    assert "rate 1mbit (tbf)" in op.ok("show", SLICE)

    shaped = kbit_per_s("8102", ip(outputs, SHAPED[0]))
    plain = best_kbit_per_s("8103", ip(outputs, PLAIN[0]), 3 * RATE_KBIT)
    print(f"netem rate {RATE_KBIT}kbit: shaped {shaped:.0f} kbit/s, other link {plain:.0f} kbit/s")
    assert shaped <= 1.5 * RATE_KBIT, shaped
    assert plain > 3 * RATE_KBIT, plain

    # a qdisc removed by hand, another changed: drift on refresh, both back after up
    testbed.run("worker2", "tc qdisc del dev tap_8102_eth1 root")
    testbed.run("worker1", "tc qdisc replace dev tap_8101_eth1 root tbf rate 5mbit burst 5000 latency 50ms")
    stack.refresh()
    drift = drift_by_name(stack)
    assert sorted(drift) == [f"{SLICE}-shape-8101-eth1", f"{SLICE}-shape-8102-eth1"], drift
    assert drift[f"{SLICE}-shape-8102-eth1"][0].startswith("no tbf (root qdisc "), drift
    assert drift[f"{SLICE}-shape-8101-eth1"][0].startswith("tbf rate 5000kbit burst 5000 "), drift
    assert drift[f"{SLICE}-shape-8101-eth1"][0].endswith(
        ", want tbf rate 1000kbit burst 1600 latency 50000us"
    )
    stack.up()
    for worker, tap in shaped_taps:
        assert qdisc(testbed, worker, tap)["options"]["rate"] == RATE_KBIT * 125
    stack.refresh()
    assert drift_by_name(stack) == {}

    # an edit of netem is an update of the two shapes alone: the TAPs stay (same ifindex), the VLANs too
    before = {tap: ifindex(testbed, w, tap) for w, tap in shaped_taps}
    reconfigure(stack, {"rate": "2mbit"})
    steps = planned_steps(stack)
    assert [(op_, name) for op_, _, name in steps] == [
        ("update", f"{SLICE}-shape-8101-eth1"),
        ("update", f"{SLICE}-shape-8102-eth1"),
    ], steps
    stack.up()
    assert {tap: ifindex(testbed, w, tap) for w, tap in shaped_taps} == before
    after = stack.outputs()
    assert [link["vlan"] for link in after["links"]] == [link["vlan"] for link in outputs["links"]]
    assert qdisc(testbed, "worker1", "tap_8101_eth1")["options"]["rate"] == 2 * RATE_KBIT * 125

    # this kernel has no netem: a delay is refused at up, before any host change
    missing = netem_missing()
    if missing is not None:
        scan_before = testbed.scan()
        reconfigure(stack, {"delay": "100ms", "rate": "2mbit"})
        refused = failure(stack.cli.run("up", "--yes", "--non-interactive", "--skip-preview", check=False))
        assert "the kernel has no netem qdisc (sch_netem), which netem delay of TAP tap_81" in refused, (
            refused
        )
        assert "Specified qdisc kind is unknown" in refused
        assert_scan_equal(scan_before, testbed.scan())
        for worker, tap in shaped_taps:
            assert qdisc(testbed, worker, tap)["kind"] == "tbf"

    # the key removed: the default qdisc again, full speed
    reconfigure(stack, None)
    stack.up()
    assert "netem" not in stack.outputs()["links"][0]
    for worker, tap in shaped_taps:
        assert qdisc(testbed, worker, tap)["kind"] not in ("tbf", "netem")
    restored = best_kbit_per_s("8102", ip(outputs, SHAPED[0]), 3 * RATE_KBIT)
    print(f"netem removed: {restored:.0f} kbit/s")
    assert restored > 3 * RATE_KBIT, restored


def test_capture_writes_the_links_pings_and_ctrl_c_leaves_no_tcpdump(
    deployed: tuple[SliceStack, dict[str, Any], Checkout], tmp_path: Path
) -> None:
    _, outputs, op = deployed
    a, b = ip(outputs, SHAPED[0]), ip(outputs, SHAPED[1])
    pcap = tmp_path / "link.pcap"
    t0 = time.monotonic()
    proc = start_capture(op, f"{SHAPED[1]}--{SHAPED[0]}", "-w", str(pcap), "--count", "6", "--filter", "icmp")
    print(f"capture start latency: {time.monotonic() - t0:.2f} s")
    assert tcpdumps("worker1"), "no tcpdump on worker1 while capturing"
    guest("8103", f"ping -c 3 -i 0.2 {ip(outputs, PLAIN[0])}")  # the other link: never in this capture
    guest("8102", f"ping -c 3 -i 1 {a}")  # each reply back before the next request, however loaded the host
    assert proc.wait(timeout=60) == 0, proc.stdout.read() if proc.stdout else ""
    frames = pcap_records(pcap.read_bytes())
    assert len(frames) == 6
    assert [icmp_ends(f) for f in frames] == [(b, a), (a, b)] * 3
    assert pcap.stat().st_mode & 0o077 == 0

    # to stdout (`-w -`, for `| wireshark -k -i -`), one endpoint's TAP
    argv = ["capture", SLICE, SHAPED[1], "-w", "-", "--count", "2", "--filter", "icmp"]
    proc_bytes = subprocess.Popen(
        [*op.script, "--project", str(op.project), *argv],
        cwd=op.project,
        env=op.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc_bytes.stderr is not None
    heard = b""
    while b"listening on" not in heard and proc_bytes.poll() is None:
        heard += proc_bytes.stderr.readline()
    guest("8102", f"ping -c 1 {a}")
    streamed, _ = proc_bytes.communicate(timeout=60)
    assert proc_bytes.returncode == 0
    assert [icmp_ends(f) for f in pcap_records(streamed)] == [(b, a), (a, b)]

    # by VLAN, no count: stopped by Ctrl-C, the worker keeps no tcpdump
    proc = start_capture(op, str(outputs["links"][0]["vlan"]), "-w", str(tmp_path / "open.pcap"))
    assert tcpdumps("worker1")
    guest("8102", f"ping -c 2 -i 0.2 {a}")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0
    deadline = time.monotonic() + 10
    while tcpdumps("worker1") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert tcpdumps("worker1") == []
    frames = pcap_records((tmp_path / "open.pcap").read_bytes())
    said = proc.stdout.read() if proc.stdout else ""
    assert sum(1 for f in frames if icmp_ends(f) in ((b, a), (a, b))) >= 4, (len(frames), said)


@pytest.mark.skipif(netem_missing() is not None, reason=f"this kernel has no sch_netem: {netem_missing()}")
def test_delay_doubles_the_round_trip_of_its_link_only(
    deployed: tuple[SliceStack, dict[str, Any], Checkout],
) -> None:
    stack, outputs, _ = deployed
    reconfigure(stack, {"delay": "100ms"})
    stack.up()
    assert stack.outputs()["links"][0]["qdisc"] == "netem"

    def rtt_ms(vm: str, address: str) -> float:
        out = guest(vm, f"ping -c 3 -i 0.3 {address}")
        return min(float(x.split("=")[1].split()[0]) for x in out.split() if x.startswith("time="))

    assert rtt_ms("8102", ip(outputs, SHAPED[0])) >= 200  # 100 ms each way
    assert rtt_ms("8103", ip(outputs, PLAIN[0])) < 100


@pytest.mark.skipif(netem_missing() is None, reason="this kernel has netem: nothing to refuse")
def test_a_new_slice_that_needs_netem_here_is_refused_before_any_change(
    slice_stack: Callable[..., SliceStack], testbed: Testbed
) -> None:
    """The workers' netem checks come before the pool claim, on which everything else waits: nothing of
    the slice is made, on any host."""
    before = testbed.scan()
    plain = [
        {"id": 8201, "worker": "worker1", "dataInterfaces": 1},
        {"id": 8202, "worker": "worker2", "dataInterfaces": 1},
    ]
    link = {"a": "8201.eth1", "b": "8202.eth1", "netem": {"delay": "20ms", "loss": "1%"}}
    stack = slice_stack("e2e-netem-new", POOL + 40, plain, [link])
    refused = failure(stack.cli.run("up", "--yes", "--non-interactive", "--skip-preview", check=False))
    assert "the kernel has no netem qdisc (sch_netem), which netem delay, loss of TAP tap_820" in refused
    assert "Specified qdisc kind is unknown" in refused
    assert_scan_equal(before, testbed.scan())
