"""`python -m bench.portsonly`: how much of a full node's slower `up` is the ports on the bridges alone.

One slice of the full-node bench (`bench.fullnode`: 20 links, the bench's ring over worker1 and worker2),
deployed and destroyed on bridges as they are and on the same bridges filled with the ports the 11 other
slices of a full node would leave there (`bench.ovscalls`' filling: internal ports on the network node, half
moved into namespaces with an address as DHCP ports are; TAPs on the workers), rounds alternating side by
side. Nothing else of those slices exists: no namespaces of theirs beyond the filling's, no dnsmasq, no
iptables rules, no claims. Per `up`: wall seconds, and per host the `ovs-vswitchd` passes
(`bridge_reconfigure` coverage counter) and the CPU the OVS daemons used. The filling is removed after each
round and the hosts are scanned before and after (they must be equal). No test runs it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import baselines as bl
from bench.__main__ import log, same_hosts, scan
from bench.engine import SliceStack
from bench.fullnode import LINKS, OVS_CPU_FN, SLICES, bench_run, measured, new_stack, specs
from bench.ovscalls import FILL, UNFILL

HOSTS = {bl.NETWORK: "internal", "worker1": "tap", "worker2": "tap"}
"""Each host and how `bench.ovscalls` fills its bridge."""

OVS_COUNTERS = (
    OVS_CPU_FN
    + r"""
echo "$(ovs-vsctl list-ports br-int | wc -l) $(ovs-appctl coverage/read-counter bridge_reconfigure) \
$(($(cpu ovs-vswitchd) + $(cpu ovsdb-server)))"
"""
)
"""br-int's ports, `ovs-vswitchd`'s passes so far, the CPU ticks of both OVS daemons so far."""


def counters() -> dict[str, tuple[int, int, int]]:
    out = {}
    for host in HOSTS:
        ports, passes, ticks = map(int, bl.remote_value(host, OVS_COUNTERS).split())
        out[host] = (ports, passes, ticks)
    return out


def up_and_down(st: SliceStack, root: Path) -> dict[str, Any]:
    """One `up` measured with each host's OVS passes and CPU, then the `destroy`."""
    before = counters()
    up = measured(st, "up", root)
    after = counters()
    measured(st, "destroy", root)
    hosts = {
        h: {
            "ports_before": before[h][0],
            "passes": after[h][1] - before[h][1],
            "ovs_cpu_s": (after[h][2] - before[h][2]) / 100,
        }
        for h in HOSTS
    }
    return {"seconds": up["seconds"], "script_mean_ms": up["script_mean_ms"], "hosts": hosts}


def fill(counts: dict[str, int]) -> None:
    for host, n in counts.items():
        if n:
            got = bl.remote_value(host, f"set -- {n} {HOSTS[host]}\n{FILL}")
            log(f"  {host}: br-int holds {got} ports")


def unfill() -> None:
    for host in HOSTS:
        bl.remote_value(host, UNFILL)


def run(args: argparse.Namespace, workdir: Path, out: dict[str, Any]) -> None:
    root = workdir / "stats"
    made: list[SliceStack] = []
    scan0 = scan()
    try:
        st = new_stack(specs(1, args.links)[0], workdir, made)
        empty = counters()
        log("the slice alone, to count its ports")
        measured(st, "up", root)
        per_slice = {h: counters()[h][0] - empty[h][0] for h in HOSTS}
        measured(st, "destroy", root)
        others = {h: per_slice[h] * (args.slices - 1) for h in HOSTS}
        out["ports_per_slice"], out["filling"] = per_slice, others
        log(f"ports per slice {per_slice}; filling {others}")
        rounds = []
        for r in range(args.rounds):
            log(f"round {r + 1}: empty bridges")
            bare = up_and_down(st, root)
            log(f"  {bare['seconds']} s; filling")
            try:
                fill(others)
                full = up_and_down(st, root)
            finally:
                unfill()
            log(f"  filled: {full['seconds']} s")
            rounds.append({"empty": bare, "filled": full})
        out["rounds"] = rounds
        same_hosts(scan0, "the rounds")
        st.cli.remove()
        made.clear()
    finally:
        for left in made:
            left.cleanup()
        unfill()
        out["scan_equal"] = scan() == scan0


def report(out: dict[str, Any]) -> str:
    rounds = out.get("rounds", [])
    if not rounds:
        return f"no rounds: {out.get('error')}"
    lines = [
        f"ports per slice {out['ports_per_slice']}; the filling (the other {out['slices'] - 1} slices' "
        f"ports) {out['filling']}",
        "| round | up s empty / filled (ratio) | passes empty / filled, network, worker1, worker2 | "
        "OVS CPU s empty / filled, network, worker1, worker2 |",
        "|---|---|---|---|",
    ]
    for i, r in enumerate(rounds, 1):
        e, f = r["empty"], r["filled"]
        passes = ", ".join(f"{e['hosts'][h]['passes']} / {f['hosts'][h]['passes']}" for h in HOSTS)
        cpu = ", ".join(f"{e['hosts'][h]['ovs_cpu_s']:.1f} / {f['hosts'][h]['ovs_cpu_s']:.1f}" for h in HOSTS)
        ratio = f["seconds"] / e["seconds"]
        lines.append(f"| {i} | {e['seconds']} / {f['seconds']} ({ratio:.2f}) | {passes} | {cpu} |")
    ratio = statistics.median(r["filled"]["seconds"] / r["empty"]["seconds"] for r in rounds)
    lines.append(f"\nmedian up filled / empty: {ratio:.2f}")
    lines.append(f"hosts equal before/after: {out.get('scan_equal')}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.portsonly", description=__doc__)
    ap.add_argument("--slices", type=int, default=SLICES, help="a full node's slices (filled: all but one)")
    ap.add_argument("--links", type=int, default=LINKS)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out: dict[str, Any] = {"started": stamp, "slices": args.slices, "links": args.links}
    return bench_run("portsonly", out, lambda workdir: run(args, workdir, out), report)


if __name__ == "__main__":
    sys.exit(main())
