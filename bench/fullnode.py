"""`python -m bench.fullnode`: one network node filled to the addressing's limit, slice by slice.

12 slices x 20 links (pools 100, 120, ... 320: 240 link VLANs whose `VLAN % 256` all differ, + VLAN 400), the
bench's ring (`bench.topology`) over worker1 and worker2. Measured:
- one by one: `pulumi up` of slice k of 12 from an empty stack (wall, remote commands, their summed time,
  lock waits and holds), and after it the network node (dnsmasq processes, their fds, VmRSS and Pss, OVS
  ports on br-int, iptables rules, network namespaces) and worker1's ports; then `pulumi destroy` of each,
  one by one, last first;
- six at once: six `pulumi up` started together (total wall, each one's, lock waits), against the same six
  deployed one by one in the first part; then six `pulumi destroy` at once.
The hosts are scanned before and after (they must be equal). No test runs it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import baselines as bl
from bench.__main__ import RESULTS, lab, log, same_hosts, scan
from bench.engine import DYNAMIC_PROVIDER, PHASE_ARGS, SliceStack, run_measured
from bench.topology import SliceSpec
from lab.exclusive import testbed_lock
from transport.ssh_stats import STATS_ENV, TIMING_ENV

POOL_FIRST = 100
LINKS = 20
SLICES = 12
AT_ONCE = 6
FLAT = 1.3
"""Target: slice 12's `up` within this factor of slice 1's."""

NODE_SAMPLE = r"""
n=0; fd=0; rss=0; pss=0
for f in /var/lib/cloudrepo/dhcp/vlan*/dnsmasq.pid; do
  p=$(cat "$f" 2>/dev/null) || continue; [ -d "/proc/$p" ] || continue
  n=$((n + 1)); fd=$((fd + $(ls "/proc/$p/fd" | wc -l)))
  rss=$((rss + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status")))
  pss=$((pss + $(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup")))
done
ports=$(ovs-vsctl list-ports br-int | wc -l)
rules=$(iptables-save | grep -c '^-A')
netns=$(ip netns list | wc -l)
slab=$(awk '/^Slab:/ {print $2}' /proc/meminfo)
echo "$n $fd $rss $pss $ports $rules $netns $slab"
"""
OVS_CPU_FN = r"""
cpu() { p=$(cat "/run/openvswitch/$1.pid" 2>/dev/null) && awk '{print $14 + $15}' "/proc/$p/stat" || echo 0; }
"""
"""`cpu DAEMON`: the CPU ticks an OVS daemon has used so far (0 when it is not running)."""
OVS_CPU = (
    OVS_CPU_FN
    + r"""
echo "$(ovs-vsctl list-ports br-int | wc -l) $(cpu ovs-vswitchd) $(cpu ovsdb-server)"
"""
)
"""br-int's ports, then the CPU ticks ovs-vswitchd and ovsdb-server have used (each OVS change costs them
more as the bridge fills)."""
NODE_FIELDS = (
    "dnsmasq",
    "dnsmasq_fds",
    "dnsmasq_rss_kb",
    "dnsmasq_pss_kb",
    "ports",
    "rules",
    "netns",
    "slab_kb",
)


def node_sample() -> dict[str, int]:
    values = bl.remote_value(bl.NETWORK, NODE_SAMPLE).split()
    out = dict(zip(NODE_FIELDS, map(int, values), strict=True))
    for host in (bl.NETWORK, "worker1"):
        ports, vswitchd, ovsdb = map(int, bl.remote_value(host, OVS_CPU).split())
        out[f"{host}_ovs_ticks"] = vswitchd + ovsdb
    out["worker1_ports"] = ports
    return out


def specs(count: int, links: int) -> list[SliceSpec]:
    return [
        SliceSpec(name=f"full{k + 1}", links=links, pool_start=POOL_FIRST + k * 20, first_vm=5000 + k * 20)
        for k in range(count)
    ]


def locked_spans(timing: Path) -> dict[str, Any]:
    """Lock waits and holds of one phase's round trips ($CLOUDREPO_SSH_TIMING files)."""
    waits, holds, reads = [], [], []
    for path in sorted(timing.glob("timing-*.jsonl")):
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            span = rec.get("host_span")
            if span and not rec.get("locked"):
                reads.append((span[1] - span[0]) / 1e9)
            if not rec.get("locked"):
                continue
            waits.append(float(rec.get("lock_wait") or 0.0))
            if span:
                holds.append((span[1] - span[0]) / 1e9)
    return {
        "locked_scripts": len(holds),
        "lock_wait_s": round(sum(waits), 3),
        "lock_wait_max_s": round(max(waits, default=0.0), 3),
        "lock_hold_s": round(sum(holds), 3),
        "lock_hold_max_s": round(max(holds, default=0.0), 3),
        "lock_hold_mean_ms": round(1000 * sum(holds) / len(holds), 1) if holds else None,
        "script_mean_ms": round(1000 * sum(reads) / len(reads), 1) if reads else None,
    }


def machine_busy_s() -> float:
    """CPU seconds the whole machine has spent busy (every core; /proc/stat, in USER_HZ = 100 ticks)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / 100  # all but idle and iowait


def measured(st: SliceStack, phase: str, root: Path) -> dict[str, Any]:
    """One phase of one stack, with its SSH counters, round trips' times and the machine's CPU."""
    where = root / f"{st.spec.name}-{phase}"
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    env = {STATS_ENV: str(where / "stats-{pid}.json"), TIMING_ENV: str(where / "timing-{pid}.jsonl")}
    busy = machine_busy_s()
    run = run_measured(st.cli, list(PHASE_ARGS[phase]), DYNAMIC_PROVIDER, env=env)
    busy = machine_busy_s() - busy
    st.log.append(f"$ pulumi {phase}\n{run.out}")
    if failed := run.failure(st.spec.name):
        raise failed
    commands, command_s = 0, 0.0
    for path in where.glob("stats-*.json"):
        doc = json.loads(path.read_text())
        commands += int(doc.get("commands_run", 0))
        command_s += float(doc.get("command_seconds", 0.0))
    told = [line.strip() for line in run.out.splitlines() if "hosts' lock:" in line]
    return {
        "stack": st.spec.name,
        "seconds": round(run.seconds, 2),
        "remote_cmds": commands,
        "remote_cmd_s": round(command_s, 2),
        "machine_cpu_s": round(busy, 1),
        **locked_spans(where),
        "lock_reports": told,
        "summary": run.phase(phase).summary,
    }


def at_once(stacks: list[SliceStack], phase: str, root: Path) -> tuple[float, list[dict[str, Any]]]:
    """`phase` of every stack started together: the total wall and each one's measure."""
    results: list[dict[str, Any] | BaseException] = [RuntimeError("not run")] * len(stacks)

    def one(i: int) -> None:
        try:
            results[i] = measured(stacks[i], phase, root)
        except BaseException as exc:  # reported below, after every thread ended
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(stacks))]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return wall, [r for r in results if isinstance(r, dict)]


def new_stack(spec: SliceSpec, workdir: Path, *made: list[SliceStack]) -> SliceStack:
    st = SliceStack(spec, workdir, workdir / "backend")
    st.init()
    for lst in made:
        lst.append(st)
    return st


def run(args: argparse.Namespace, workdir: Path, logdir: Path, out: dict[str, Any]) -> None:
    made: list[SliceStack] = []
    every: list[SliceStack] = []
    root = workdir / "stats"
    scan0 = scan()
    out["node_empty"] = node_sample()
    try:
        if not args.no_one_by_one:
            stacks = [new_stack(s, workdir, made, every) for s in specs(args.slices, args.links)]
            ups, destroys, nodes = [], [], []
            for st in stacks:
                log(f"{st.spec.name}: pulumi up (pool {st.spec.pool_start})")
                ups.append(measured(st, "up", root))
                nodes.append(node_sample())
                log(f"  {ups[-1]['seconds']} s; node {nodes[-1]}")
            for st in reversed(stacks):
                log(f"{st.spec.name}: pulumi destroy")
                destroys.append(measured(st, "destroy", root))
            out["one_by_one"] = {"up": ups, "node_after_up": nodes, "destroy": destroys}
            same_hosts(scan0, "the one-by-one destroys")
            for st in stacks:
                st.cli.remove()
            made.clear()
        if args.at_once:
            stacks = [new_stack(s, workdir, made, every) for s in specs(args.at_once, args.links)]
            log(f"{len(stacks)} x pulumi up at once")
            wall, ups = at_once(stacks, "up", root)
            node = node_sample()
            log(f"  {wall:.1f} s; node {node}")
            log(f"{len(stacks)} x pulumi destroy at once")
            dwall, destroys = at_once(stacks, "destroy", root)
            out["at_once"] = {"up_wall": round(wall, 2), "up": ups, "node_after_up": node}
            out["at_once"].update({"destroy_wall": round(dwall, 2), "destroy": destroys})
            same_hosts(scan0, "the destroys at once")
            for st in stacks:
                st.cli.remove()
            made.clear()
    finally:
        for st in reversed(made):
            st.cleanup()
        for st in every:
            (logdir / f"{st.spec.name}.log").write_text("\n".join(st.log))
        out["scan_equal"] = scan() == scan0


def per_vlan(before: dict[str, int], after: dict[str, int], vlans: int) -> dict[str, float]:
    """What one VLAN adds on the network node, from two samples `vlans` VLANs apart."""
    return {k: round((after[k] - before[k]) / vlans, 2) for k in NODE_FIELDS[1:] if vlans}


def report(out: dict[str, Any]) -> str:
    lines = []
    one = out.get("one_by_one")
    if one:
        lines.append(
            "| slice k | up s | remote cmds | remote cmd s | lock wait s | lock hold s (max) | "
            "read script ms | OVS CPU s (network/worker1) | machine CPU s | dnsmasq | fds | Pss MB | "
            "br-int ports (network/worker1) | iptables rules |"
        )
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        samples = [out["node_empty"], *one["node_after_up"]]
        for k, (u, n) in enumerate(zip(one["up"], one["node_after_up"], strict=True), 1):
            ovs = "/".join(
                f"{(n[f'{h}_ovs_ticks'] - samples[k - 1][f'{h}_ovs_ticks']) / 100:.1f}"
                for h in ("network", "worker1")
            )
            lines.append(
                f"| {k} | {u['seconds']} | {u['remote_cmds']} | {u['remote_cmd_s']} | {u['lock_wait_s']} | "
                f"{u['lock_hold_s']} ({u['lock_hold_max_s']}) | {u['script_mean_ms']} | {ovs} | "
                f"{u.get('machine_cpu_s', '')} | "
                f"{n['dnsmasq']} | {n['dnsmasq_fds']} | {n['dnsmasq_pss_kb'] / 1024:.1f} | "
                f"{n['ports']}/{n['worker1_ports']} | {n['rules']} |"
            )
        first, last = one["up"][0]["seconds"], one["up"][-1]["seconds"]
        lines.append(f"\nup of slice {len(one['up'])} / slice 1: {last / first:.2f} (target <= {FLAT})")
        d = [x["seconds"] for x in one["destroy"]]
        lines.append(
            f"destroy, last first: {d} (sum {sum(d):.1f} s); "
            f"ups sum {sum(x['seconds'] for x in one['up']):.1f} s"
        )
        full = one["node_after_up"][-1]
        vlans = full["dnsmasq"] - out["node_empty"]["dnsmasq"]
        lines.append(
            f"per VLAN on the network node ({vlans} servers): {per_vlan(out['node_empty'], full, vlans)}"
        )
    both = out.get("at_once")
    if both:
        n = len(both["up"])
        each = [u["seconds"] for u in both["up"]]
        lines.append(
            f"\n{n} at once: up wall {both['up_wall']} s (each {each}); destroy wall {both['destroy_wall']} s"
        )
        lines.append(
            f"lock wait per up: {[u['lock_wait_s'] for u in both['up']]}; reports: "
            f"{sum(len(u['lock_reports']) for u in both['up'])}"
        )
        if one:
            serial = sum(u["seconds"] for u in one["up"][:n])
            sd = sum(x["seconds"] for x in one["destroy"][-n:])
            lines.append(
                f"the same {n} one by one: up {serial:.1f} s (at once / one by one: "
                f"{both['up_wall'] / serial:.2f}); destroy {sd:.1f} s ({both['destroy_wall'] / sd:.2f})"
            )
    lines.append(f"hosts equal before/after: {out.get('scan_equal')}")
    return "\n".join(lines)


def bench_run(
    name: str, out: dict[str, Any], body: Callable[[Path], None], report: Callable[[dict[str, Any]], str]
) -> int:
    """`body(workdir)` under the testbed's bench lock; `out` (with the error, if any) saved and reported."""
    RESULTS.mkdir(exist_ok=True)
    if lab("status", check=False).returncode != 0:
        lab("up")
    workdir = Path(tempfile.mkdtemp(prefix=f"cloudrepo-{name}-"))
    try:
        with testbed_lock("bench"):
            body(workdir)
    except Exception as exc:
        out["error"] = str(exc)
        log(f"FAILED: {exc}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    (RESULTS / f"{out['started']}-{name}.json").write_text(json.dumps(out, indent=2) + "\n")
    print(report(out))
    return 0 if out.get("scan_equal") and "error" not in out else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.fullnode", description=__doc__)
    ap.add_argument("--slices", type=int, default=SLICES)
    ap.add_argument("--links", type=int, default=LINKS)
    ap.add_argument("--at-once", type=int, default=AT_ONCE, help="slices started together (0: skip)")
    ap.add_argument("--no-one-by-one", action="store_true")
    args = ap.parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    logdir = RESULTS / f"{stamp}-fullnode-logs"
    logdir.mkdir(parents=True)
    out: dict[str, Any] = {"started": stamp, "slices": args.slices, "links": args.links}
    return bench_run("fullnode", out, lambda workdir: run(args, workdir, logdir, out), report)


if __name__ == "__main__":
    sys.exit(main())
