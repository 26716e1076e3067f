"""`python -m bench [--quick]`: `pulumi up/preview/refresh/destroy` against baselines on the testbed.

Holds the testbed lock for the whole run, scans every host before and after (they must be equal), prints a
table and the targets, and writes JSON (and the engine's output) under `bench/results/`.

About 430 lines: the scenarios' order, the result table and the targets' verdicts, one report.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import baseline_c
from bench import baselines as bl
from bench import vms as bench_vms
from bench.engine import Phase, SliceStack
from bench.report import ratios, table, targets
from bench.topology import ROOT, SliceSpec, expected_outputs_match
from lab.common import lab_dir
from lab.exclusive import testbed_lock
from lab.pulumi_cli import TOOLCHAIN_BIN, PulumiFailed

RESULTS = Path(__file__).resolve().parent / "results"
WIDE_WORKERS = ("worker1", "worker2", "worker3", "worker4")
MULTI_POOLS = (100, 120, 140, 160, 180)  # 100 VLANs, clear of 400 and of >= 980; vlan % 256 all distinct


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def lab(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab", *args], cwd=ROOT, capture_output=True, text=True, check=check
    )


def scan() -> dict[str, Any]:
    return json.loads(lab("scan").stdout)


class ScanMismatch(RuntimeError):
    pass


def same_hosts(before: dict[str, Any], where: str) -> None:
    after = scan()
    if after != before:
        diff = []
        for host in sorted(set(before["hosts"]) | set(after["hosts"])):
            a, b = before["hosts"].get(host, {}), after["hosts"].get(host, {})
            for key in sorted(set(a) | set(b)):
                if a.get(key) != b.get(key):
                    diff.append(f"{host}.{key}")
        raise ScanMismatch(f"hosts differ from the first scan after {where}: {', '.join(diff)}")


def machine() -> dict[str, Any]:
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    version = subprocess.run(
        [str(TOOLCHAIN_BIN / "pulumi"), "version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "pulumi": version,
        "mem_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    }


def phase_json(p: Phase) -> dict[str, Any]:
    return p.as_json()


def aggregate(phases: list[Phase]) -> dict[str, Any]:
    """Several stacks' runs of one phase, one after another: times and counters summed, memory and
    concurrent sessions max."""
    rss = [p.provider_peak_rss_kb for p in phases if p.provider_peak_rss_kb]
    cpu = [p.provider_cpu_seconds for p in phases if p.provider_cpu_seconds is not None]
    return {
        "seconds": round(sum(p.seconds for p in phases), 3),
        "ssh_connections_opened": sum(p.connections_opened for p in phases),
        "ssh_commands_run": sum(p.commands_run for p in phases),
        "ssh_command_seconds": round(sum(p.command_seconds for p in phases), 3),
        "provider_peak_rss_mb": round(max(rss) / 1024, 1) if rss else None,
        "provider_cpu_seconds": round(sum(cpu), 2) if cpu else None,
        "host_ssh_connections": sum(p.host_connections or 0 for p in phases),
        "host_peak_sessions": max((p.host_peak_sessions or 0 for p in phases), default=None),
        "summary": f"{len(phases)} stacks, one after another",
        "each_seconds": [round(p.seconds, 2) for p in phases],
    }


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path, logdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.logdir = logdir
        self.backend = workdir / "backend"
        self.scan0: dict[str, Any] = {}
        self.ip_forward = "0"
        self.stacks: list[SliceStack] = []
        self.c_stacks: list[baseline_c.CommandStack] = []

    def stack(self, spec: SliceSpec) -> SliceStack:
        st = SliceStack(spec, self.workdir, self.backend, parallel=self.args.parallel)
        st.init()
        self.stacks.append(st)
        return st

    def save_log(self, st: SliceStack) -> None:
        (self.logdir / f"{st.spec.name}.log").write_text("\n".join(st.log))

    def run_baselines(self, specs: list[SliceSpec], run_b: bool, b_teardown: bool) -> dict[str, Any]:
        work = bl.host_work(specs, self.ip_forward)
        order = [h for h in sorted(work.create) if h != bl.NETWORK] + [bl.NETWORK]
        out: dict[str, Any] = {
            "commands": {"create": work.count("create"), "teardown": work.count("teardown")},
        }
        name = specs[0].name if len(specs) == 1 else f"{len(specs)} slices"
        try:
            log(f"{name}: (a) floor create/teardown")
            out["floor"] = {"create": bl.floor(work.create).as_json()}
            out["floor"]["teardown"] = bl.floor(work.teardown).as_json()
            same_hosts(self.scan0, f"(a) on {name}")
            if run_b:
                log(f"{name}: (b) one ssh per command, {work.count('create')} commands")
                b: dict[str, Any] = {"create": bl.per_command(work.create, order).as_json()}
                if b_teardown:
                    b["teardown"] = bl.per_command(work.teardown, order).as_json()
                else:
                    bl.floor(work.teardown)
                    b["teardown"] = {"status": "not run (time budget); cleaned up by the (a) script"}
                out["per_command_ssh"] = b
                same_hosts(self.scan0, f"(b) on {name}")
            else:
                out["per_command_ssh"] = {"create": {"status": "not run in this mode (time budget)"}}
        except Exception:
            bl.floor(work.teardown, strict=False)  # leave nothing behind
            raise
        return out

    def run_c(self, name: str, specs: list[SliceSpec]) -> dict[str, Any]:
        """(c): one stack of `remote.Command`s holding all of `specs`: up, no-op preview, refresh, destroy.

        A failing phase is a result of (c), not of the bench: recorded, the stack destroyed, anything left
        removed by the (a) teardown script; the hosts must then be as they were."""
        stack = baseline_c.CommandStack(name, specs, self.ip_forward, self.workdir, self.backend)
        self.c_stacks.append(stack)
        log(f"{name}: (c) pulumi-command, {len(specs)} slice(s) in one stack")
        out: dict[str, Any] = {"stacks": 1}
        try:
            stack.init()
            for ph in baseline_c.PHASES:
                log(f"{name}: (c) pulumi {ph}")
                out[ph] = stack.phase(ph).as_json()
            stack.cli.remove()
            self.c_stacks.remove(stack)
        except PulumiFailed as exc:
            out["status"] = "failed: " + str(exc).splitlines()[0]
            log(f"{name}: (c) {out['status']}")
            self.clean_c(stack)
        finally:
            (self.logdir / f"{name}.log").write_text("\n".join(stack.log))
        same_hosts(self.scan0, f"(c) on {name}")
        return out

    def clean_c(self, stack: baseline_c.CommandStack) -> None:
        """Destroy a (c) stack left by a failure, then the (a) teardown script for whatever is left."""
        stack.cleanup()
        self.c_stacks.remove(stack)
        bl.floor(bl.host_work(stack.specs, self.ip_forward).teardown, strict=False)

    def c_result(self, name: str, specs: list[SliceSpec], run: bool) -> dict[str, Any]:
        if not run:
            why = "--no-c" if self.args.no_c else "time budget: see --c-links"
            return {"status": f"not run ({why})"}
        return self.run_c(name, specs)

    def single(self, links: int, run_b: bool, b_teardown: bool, run_c: bool) -> dict[str, Any]:
        spec = SliceSpec(name=f"bench{links}", links=links, pool_start=100, first_vm=2000)
        return self.one_slice(spec, f"{links} links", "single", run_b, b_teardown, run_c)

    def wide(self, run_c: bool) -> dict[str, Any]:
        """40 VMs in 20 pairs over 4 workers: a bigger slice than the ring, the same 20 links."""
        spec = SliceSpec(
            name="wide40", links=20, pool_start=100, first_vm=4000, workers=WIDE_WORKERS, pairs=True
        )
        return self.one_slice(spec, f"{len(spec.vm_ids)} VMs x 4 workers", "wide", False, False, run_c)

    def one_slice(
        self, spec: SliceSpec, name: str, kind: str, run_b: bool, b_teardown: bool, run_c: bool
    ) -> dict[str, Any]:
        links = spec.links
        log(f"{spec.name}: {links} links, {len(spec.vm_ids)} VMs, {len(spec.taps())} TAPs")
        sc: dict[str, Any] = {
            "name": name,
            "kind": kind,
            "links": links,
            "vms": len(spec.vm_ids),
            "internet_vms": sum(spec.internet(i) for i in range(len(spec.vm_ids))),
            "taps": len(spec.taps()),
            "hosts": 1 + len(spec.workers),
            "pulumi": {},
        }
        st = self.stack(spec)
        try:
            for ph in ("up", "preview", "up-noop", "refresh", "destroy"):
                log(f"{spec.name}: pulumi {ph}")
                sc["pulumi"][ph] = phase_json(st.phase(ph, self.workdir / "stats"))
                if ph == "up":
                    problems = expected_outputs_match(spec, st.outputs())
                    if problems:
                        raise RuntimeError(f"baselines would not build the slice's objects: {problems}")
        finally:
            self.save_log(st)
        same_hosts(self.scan0, f"pulumi destroy of {spec.name}")
        c = self.c_result(f"c{spec.name}", [spec], run_c)
        sc["baselines"] = self.run_baselines([spec], run_b, b_teardown)
        sc["baselines"]["pulumi_command"] = c
        sc["ratios"] = ratios(sc)
        return sc

    def multi(self, links: int, pools: tuple[int, ...], run_c: bool) -> dict[str, Any]:
        specs = [
            SliceSpec(name=f"multi{i + 1}", links=links, pool_start=pool, first_vm=3000 + i * links)
            for i, pool in enumerate(pools)
        ]
        total = links * len(specs)
        sc: dict[str, Any] = {
            "name": f"{len(specs)} slices x {links} links",
            "kind": "multi",
            "links": total,
            "vms": sum(len(s.vm_ids) for s in specs),
            "taps": sum(len(s.taps()) for s in specs),
            "hosts": 3,
            "pulumi": {},
        }
        stacks = [self.stack(s) for s in specs]
        ups, destroys = [], []
        try:
            for st in stacks:
                log(f"{st.spec.name}: pulumi up (pool {st.spec.pool_start})")
                ups.append(st.phase("up", self.workdir / "stats"))
            last = stacks[-1]
            for ph in ("preview", "up-noop", "refresh"):
                log(f"{last.spec.name}: pulumi {ph} with {total} VLANs in use")
                sc["pulumi"][ph] = phase_json(last.phase(ph, self.workdir / "stats"))
                sc["pulumi"][ph]["summary"] += f" (stack {last.spec.name}, {total} VLANs on the node)"
            for st in stacks:
                log(f"{st.spec.name}: pulumi destroy")
                destroys.append(st.phase("destroy", self.workdir / "stats"))
        finally:
            for st in stacks:
                self.save_log(st)
        sc["pulumi"]["up"] = aggregate(ups)
        sc["pulumi"]["destroy"] = aggregate(destroys)
        sc["pulumi"]["up_each"] = [phase_json(p) for p in ups]
        sc["pulumi"]["destroy_each"] = [phase_json(p) for p in destroys]
        same_hosts(self.scan0, "the multi-slice destroys")
        c = self.c_result("cmulti", specs, run_c)
        sc["baselines"] = self.run_baselines(specs, run_b=False, b_teardown=False)
        sc["baselines"]["pulumi_command"] = c
        sc["ratios"] = ratios(sc)
        return sc

    def cleanup(self) -> None:
        for st in reversed(self.stacks):
            st.cleanup()
        for cst in list(self.c_stacks):
            self.clean_c(cst)


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="CI-sized run (about 2 minutes)")
    ap.add_argument("--links", type=int, nargs="*", help="single-slice sizes (default 5 10 20; quick: 5)")
    ap.add_argument(
        "--b-links",
        type=int,
        nargs="*",
        help="sizes on which (b) runs (default 20; quick: 5): one ssh per command is slow",
    )
    ap.add_argument(
        "--b-teardown",
        action="store_true",
        help="also time (b)'s teardown (default: quick mode only; otherwise the (a) script cleans up)",
    )
    ap.add_argument(
        "--c-links",
        type=int,
        nargs="*",
        help="sizes on which (c) pulumi-command runs (default: every size, the 40-VM slice (with 20) and the "
        "multi scenario (only by default); quick: 5)",
    )
    ap.add_argument("--no-c", action="store_true", help="skip (c) pulumi-command")
    ap.add_argument("--no-multi", action="store_true", help="skip 5 slices x 20 links")
    ap.add_argument("--no-wide", action="store_true", help="skip 40 VMs over 4 workers")
    ap.add_argument("--no-vms", action="store_true", help="skip boot-to-lease of 4 launched VMs")
    ap.add_argument("--parallel", type=int, default=None, help="pulumi --parallel (default: the engine's)")
    ap.add_argument("--out", type=Path, default=None, help="JSON file (default bench/results/<time>.json)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    sizes = args.links if args.links else ([5] if args.quick else [5, 10, 20])
    b_sizes = set(args.b_links if args.b_links is not None else ([5] if args.quick else [20]))
    b_teardown = args.quick or args.b_teardown
    c_sizes = (
        set()
        if args.no_c
        else set(args.c_links if args.c_links is not None else [5] if args.quick else sizes)
    )
    do_multi = not (args.quick or args.no_multi)
    do_wide = not (args.quick or args.no_wide)
    c_multi = not args.no_c and args.c_links is None  # 1,800 Commands: only in a default full run
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(exist_ok=True)
    logdir = RESULTS / f"{stamp}-logs"
    logdir.mkdir()
    out = args.out or RESULTS / f"{stamp}.json"

    started_lab = False
    if lab("status", check=False).returncode != 0:
        workers = ["--workers", str(len(WIDE_WORKERS))] if do_wide else []
        log(f"testbed not up: python -m lab up {' '.join(workers)}")
        lab("up", *workers)
        started_lab = True
    have_workers = json.loads((lab_dir() / "inventory.json").read_text())["workers"]
    wide_missing = [w for w in WIDE_WORKERS if w not in have_workers]
    workdir = Path(tempfile.mkdtemp(prefix="cloudrepo-bench-"))
    results: dict[str, Any] = {
        "started": stamp,
        "mode": "quick" if args.quick else "full",
        "machine": machine(),
        "parallel": args.parallel,
        "scenarios": [],
    }
    t0 = time.monotonic()
    bench = Bench(args, workdir, logdir)
    ok = False
    try:
        with testbed_lock("bench"):
            bench.scan0 = scan()
            bench.ip_forward = bl.remote_value(bl.NETWORK, "cat /proc/sys/net/ipv4/ip_forward")
            try:
                for n in sizes:
                    results["scenarios"].append(bench.single(n, n in b_sizes, b_teardown, n in c_sizes))
                if do_wide and not wide_missing:
                    results["scenarios"].append(bench.wide(20 in c_sizes))
                elif do_wide:
                    results["wide"] = (
                        f"not run: the testbed has no {', '.join(wide_missing)} (lab up --workers 4)"
                    )
                    log(results["wide"])
                if do_multi:
                    results["scenarios"].append(bench.multi(20, MULTI_POOLS, c_multi))
                if not args.no_vms:
                    log("boot-to-lease: 4 launched VMs")
                    results["vms"] = bench_vms.boot_to_lease(
                        workdir, bench.backend, workdir / "stats", args.parallel
                    )
                    ok = not results["vms"]["missing"] and not results["vms"]["qemu_left"]
                else:
                    ok = True
            except (PulumiFailed, bl.BaselineFailed, ScanMismatch, RuntimeError) as exc:
                results["error"] = str(exc)
                log(f"FAILED: {exc}")
            finally:
                bench.cleanup()
                after = scan()
                results["scan_equal"] = after == bench.scan0
                if not results["scan_equal"]:
                    log("hosts differ from the scan before the bench")
                    ok = False
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if started_lab:
            lab("down", check=False)
    results["seconds"] = round(time.monotonic() - t0, 1)
    results["targets"] = [
        {"target": t, "met": m, "evidence": e} for t, m, e in targets(results) if results["scenarios"]
    ]
    out.write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    m = results["machine"]
    print(f"machine: {m['cores']} cores ({m['cpu']}), {m['mem_gb']} GB, kernel {m['kernel']}, {m['pulumi']}")
    print(
        f"mode: {results['mode']}, {results['seconds']} s in all; "
        f"hosts equal before/after: {results.get('scan_equal')}"
    )
    if results["scenarios"]:
        print(table(results))
        print()
        for t in results["targets"]:
            mark = {True: "MET", False: "MISSED", None: "not measured"}[t["met"]]
            print(f"- {t['target']}: {mark} ({t['evidence']})")
    if "vms" in results:
        v = results["vms"]
        print(
            f"\nlaunched VMs ({v['vms']}, TCG): up {v['up_seconds']} s; all {v['leases']} leases held "
            f"{v['up_to_all_leases_seconds']} s after up started (missing: {v['missing'] or 'none'}); "
            f"destroy {v['destroy_seconds']} s, no QEMU left after {v['destroy_to_no_qemu_seconds']} s"
        )
    print(f"\nJSON: {out}\nengine output: {logdir}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
