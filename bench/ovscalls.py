"""`python -m bench.ovscalls`: what one Open vSwitch call of the host scripts costs on an empty bridge and
on a full one, side by side.

On one testbed host (default the network node), each case runs in a loop (or, for a burst, N at once) on the
bridge as it is, then again after the bridge is filled the way a full node fills it (`--ports` internal ports,
half of them moved into namespaces of their own with an address, as DHCP ports are; on a worker, TAPs). Per
case: the wall time per call and the CPU `ovs-vswitchd` and `ovsdb-server` used per call (from their
`/proc/<pid>/stat`, read after the daemons settled). "before" cases are the commands the host scripts ran
until this bench's change; "now" cases are the program's own steps and guards (built by the kinds). The
filling is removed afterwards; the host's ports are counted before and after (they must be equal).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

from bench import baselines as bl
from bench.__main__ import RESULTS, lab, log
from lab.exclusive import testbed_lock
from providers import hoststate, predict
from providers.kinds import tap_port
from vocabulary.specs import TapPortSpec

BRIDGE = "br-int"
PORT = "ens4"
"""A port every testbed host's bridge has (the trunk)."""

_CLOCK = r"""
cpu() { p=$(cat "/run/openvswitch/$1.pid") && awk '{print $14 + $15}' "/proc/$p/stat"; }
now() { date +%s%N; }
settle() { ovs-vsctl --timeout=30 wait-until open_vswitch . "cur_cfg>=$(ovs-vsctl get open . next_cfg)" \
  >/dev/null 2>&1; sleep 1; }
# t NAME N MODE FN: FN 0..N-1 (MODE 1: all at once; 2: FN N, once, which does all N);
# prints NAME|N|ns|vswitchd ticks|ovsdb ticks
t() { name=$1; n=$2; par=$3; f=$4; v0=$(cpu ovs-vswitchd); d0=$(cpu ovsdb-server); s=$(now); i=0
  [ "$par" = 2 ] && { "$f" "$n" >/dev/null 2>&1 || echo "failed: $name" >&2; i=$n; }
  while [ "$i" -lt "$n" ]; do
    if [ "$par" = 1 ]; then "$f" "$i" >/dev/null 2>&1 &
    else "$f" "$i" >/dev/null 2>&1 || echo "failed: $name" >&2; fi
    i=$((i + 1)); done; wait; e=$(now); settle
  echo "$name|$n|$((e - s))|$(($(cpu ovs-vswitchd) - v0))|$(($(cpu ovsdb-server) - d0))"; }
"""

FILL = r"""
# $1 count, $2 kind (internal: half moved into a namespace with an address; tap: TAPs)
i=0; a=""
while [ "$i" -lt "$1" ]; do
  if [ "$2" = tap ]; then ip tuntap add mode tap name "ovf$i" && ip link set dev "ovf$i" up || exit 1
    a="$a -- add-port br-int ovf$i tag=$((3000 + i / 2))"
  else a="$a -- add-port br-int ovf$i tag=$((3000 + i / 2)) -- set interface ovf$i type=internal"; fi
  i=$((i + 1))
  if [ $((i % 40)) = 0 ] || [ "$i" = "$1" ]; then ovs-vsctl --timeout=120 $a || exit 1; a=""; fi
done
if [ "$2" = internal ]; then i=1
  while [ "$i" -lt "$1" ]; do ip netns add "ovfns$i" && ip link set dev "ovf$i" netns "ovfns$i" &&
    ip -n "ovfns$i" addr add "10.$((i / 200)).$((i % 200)).2/24" dev "ovf$i" &&
    ip -n "ovfns$i" link set "ovf$i" up || exit 1
    i=$((i + 2)); done
  i=0; while [ "$i" -lt "$1" ]; do ip addr add "10.$((100 + i / 200)).$((i % 200)).1/24" dev "ovf$i" &&
    ip link set "ovf$i" up || exit 1; i=$((i + 2)); done
fi
ovs-vsctl list-ports br-int | wc -l
"""
UNFILL = r"""
for n in $(ip netns list | awk '/^ovfns/ {print $1}'); do ip netns del "$n"; done
a=""; for p in $(ovs-vsctl list-ports br-int | grep '^ov[fb]'); do
  a="$a -- --if-exists del-port br-int $p"; done
[ -z "$a" ] || ovs-vsctl --timeout=120 $a
for d in $(ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | grep '^ov[fb]'); do
  ip link delete dev "$d"; done
ovs-vsctl list-ports br-int | wc -l
"""

_OLD_READY_NO_PORT = (
    'b=$1; p=$2; u=$(ovs-vsctl --bare br-exists "$b" -- --columns=_uuid find port "name=\\"$p\\"") '
    '|| exit 1; [ -z "$u" ]'
)
"""The create guard's OVS check before this change (tools left out)."""


def _fn(name: str, body: str) -> str:
    return f"{name}() {{\n{body}\n}}\n"


def _argv(step_argv: tuple[str, ...] | list[str]) -> str:
    return shlex.join(step_argv)


def _tap() -> TapPortSpec:
    return TapPortSpec.model_validate(
        {
            "slice": "ovsbench",
            "host": {"name": "h", "address": "127.0.0.1", "port": 22},
            "name": "ovbtap",
            "vm": 1,
            "iface": "eth1",
            "mac": "52:54:00:00:00:01",
            "vlan": 3999,
        }
    )


def _tap_steps() -> str:
    """The kind's own create plan for a fresh TAP on a link, as one sh function of the TAP's name."""
    spec = _tap()
    steps = tap_port.plan_ensure(spec, tap_port.TapHave(None, None))
    lines = []
    for step in steps:
        argv = [a.replace(spec.name, "@TAP@") for a in step.argv]
        lines.append(_argv(argv).replace("@TAP@", '"ovb$1"') + " || return 1")
    return "\n".join(lines)


def _one_transaction(group: str, *, before: str = "", options: str = "") -> str:
    """sh: for each index $i below $n (`before` first), the `ovs-vsctl` command group `group`; all of them
    then in ONE transaction."""
    return (
        f'i=0; set --\nwhile [ "$i" -lt "$n" ]; do {before}set -- "$@" -- {group}; i=$((i + 1)); done\n'
        f'ovs-vsctl {options}"$@"'
    )


def _tap_batch() -> str:
    """`$1` fresh TAPs made one by one (device, alias and up as the kind makes them), then every port added,
    tagged and marked in ONE OVSDB transaction: the kind's own attach, one `--` command group per TAP."""
    spec = _tap()
    attach = tap_port.ovs_command(spec, None, wait=False)
    assert attach[:2] == ["ovs-vsctl", "--no-wait"], attach
    device = [s for s in tap_port.plan_ensure(spec, tap_port.TapHave(None, None)) if s.argv[0] != "ovs-vsctl"]
    made = " && ".join(_argv(step.argv).replace(spec.name, '"ovb$i"') for step in device)
    group = _argv(attach[2:]).replace(spec.name, '"ovb$i"')
    return "n=$1; " + _one_transaction(group, before=f"{made} || return 1\n  ", options="--no-wait ")


_TAP_BATCH_DELETE = (
    "n=$1; "
    + _one_transaction('--if-exists del-port br-int "ovb$i"')
    + ' || return 1\ni=0; while [ "$i" -lt "$n" ]; do ip link delete dev "ovb$i" || return 1; '
    + "i=$((i + 1)); done"
)
_GATEWAY_BATCH = (
    "n=$1; "
    + _one_transaction('add-port br-int "ovbg$i" tag=3998 -- set interface "ovbg$i" type=internal')
    + " || return 1\n"
    + _one_transaction('del-port "ovbg$i"')
)


def cases(n: int) -> list[tuple[str, int, int, str]]:
    """(name, calls, mode: 0 one by one, 1 all at once, 2 one function doing all, sh body of a function of
    the call's index $1, or for mode 2 of the number of calls)."""
    port_read = _argv(hoststate.port_probe("p", PORT).argv)
    q = shlex.quote
    reads = [
        ("a port read: ovs-vsctl find port name=P", port_read),
        ("ovs-vsctl port-to-br P", f"ovs-vsctl port-to-br {PORT}"),
        ("ovs-vsctl br-exists B (before)", f"ovs-vsctl br-exists {BRIDGE}"),
        (
            "the bridge by find (now: hoststate.BRIDGE_EXISTS)",
            f"sh -c {q(hoststate.BRIDGE_EXISTS)} sh {BRIDGE}",
        ),
        ("create guard, bridge + no port (before)", f"sh -c {q(_OLD_READY_NO_PORT)} sh {BRIDGE} nope"),
        ("create guard, bridge + no port (now)", f"sh -c {q(predict._READY_NO_PORT)} sh {BRIDGE} nope ip"),
        ("ovs-vsctl get interface P ofport", f"ovs-vsctl get interface {PORT} ofport"),
        ("ovs-vsctl find bridge: names and ports", "ovs-vsctl --bare --columns=name,ports find bridge"),
        (
            "ovs-ofctl dump-flows by cookie",
            f"ovs-ofctl --no-names --no-stats dump-flows {BRIDGE} cookie=0x1/-1",
        ),
        (
            "ovs-ofctl -O OpenFlow13 dump-flows by cookie",
            f"ovs-ofctl -O OpenFlow13 --no-names --no-stats dump-flows {BRIDGE} cookie=0x1/-1",
        ),
        ("ovs-vsctl find port tag=N (strays)", "ovs-vsctl --bare --columns=name find port tag=3999"),
        (
            "ovsdb-client select Port where name=P",
            "ovsdb-client transact "
            + q(
                json.dumps(
                    ["Open_vSwitch", {"op": "select", "table": "Port", "where": [["name", "==", PORT]]}]
                )
            ),
        ),
    ]
    add = f"ovs-vsctl @W add-port {BRIDGE} ovbint -- set interface ovbint type=internal"
    internal = [
        ("internal port add + del, waiting", f"{add.replace('@W ', '')} && ovs-vsctl del-port ovbint"),
        (
            "internal port add + del, --no-wait",
            f"{add.replace('@W', '--no-wait')} && ovs-vsctl --no-wait del-port ovbint",
        ),
    ]
    before = (
        'ip tuntap add mode tap name "ovb$1" && ip link set dev "ovb$1" alias cloudrepo:ovsbench && '
        'ip link set dev "ovb$1" up && ovs-vsctl --may-exist add-port br-int "ovb$1" tag=3999 -- set port '
        '"ovb$1" tag=3999 vlan_mode=access external_ids:cloudrepo-kind=tap'
    )
    delete = 'ovs-vsctl --if-exists del-port br-int "ovb$1" && ip link delete dev "ovb$1"'
    devices = (
        'ip tuntap add mode tap name "ovb$1" && ip link set dev "ovb$1" alias x && ip link set dev "ovb$1" up'
    )
    taps = [
        ("TAP create (before: alias, up, add-port waiting)", before),
        ("TAP delete (del-port waiting, ip link delete)", delete),
        ("TAP create (now: tap_port.plan_ensure)", _tap_steps()),
        ("TAP delete, again", delete),
        ("TAP device only, no OVS: create, alias, up", devices),
        ("TAP device only: delete", 'ip link delete dev "ovb$1"'),
    ]
    gw = 'ovs-vsctl add-port br-int "ovbg$1" tag=3998 -- set interface "ovbg$1" type=internal && '
    addr = '"10.250.$1.1/24" dev "ovbg$1"'
    gateways = [
        (
            "gateway: add port (waiting), ip addr add, ip link set up, del-port",
            f'{gw}ip addr add {addr} && ip link set dev "ovbg$1" up && ovs-vsctl del-port "ovbg$1"',
        ),
        (
            "gateway: the same, address and up in one ip -batch",
            f'{gw}printf \'addr add %s dev %s\\nlink set dev %s up\\n\' "10.250.$1.1/24" "ovbg$1" "ovbg$1" '
            '| ip -batch - && ovs-vsctl del-port "ovbg$1"',
        ),
        ("gateway: add port (waiting), del-port, no address", f'{gw}ovs-vsctl del-port "ovbg$1"'),
    ]
    out: list[tuple[str, int, int, str]] = [(name, n, 0, body) for name, body in reads]
    out += [(name, max(1, n // 2), 0, body) for name, body in gateways]
    out += [(f"gateways: {n} ports added in one transaction (waiting), removed in one", n, 2, _GATEWAY_BATCH)]
    out += [(name, max(1, n // 2), 0, body) for name, body in internal]
    out += [(name, max(1, n // 2), 0, body) for name, body in taps]
    out += [(f"{name}, {n} at once", n, 1, body) for name, body in taps[:4]]
    out += [
        (f"TAP create, {n} ports in one transaction (devices one by one)", n, 2, _tap_batch()),
        (f"TAP delete, {n} ports in one transaction", n, 2, _TAP_BATCH_DELETE),
    ]
    return out


def script(n: int) -> str:
    parts = [_CLOCK]
    calls = []
    for k, (name, count, mode, body) in enumerate(cases(n)):
        parts.append(_fn(f"c{k}", body))
        calls.append(f"t {shlex.quote(name)} {count} {mode} c{k}")
    return "".join(parts) + "\n".join(calls) + "\n"


def remote(host: str, text: str) -> str:
    r = subprocess.run(bl.ssh_argv(host, "sh -s"), input=text, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"{host}: exit {r.returncode}: {r.stderr.strip()[-2000:]}")
    if r.stderr.strip():
        log(r.stderr.strip()[-2000:])
    return r.stdout


def parse(text: str) -> dict[str, dict[str, float]]:
    """ms per call, and the daemons' CPU ms per call (ticks of 10 ms)."""
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) != 5:
            continue
        name, n, ns, vsd, db = parts[0], int(parts[1]), int(parts[2]), int(parts[3]), int(parts[4])
        out[name] = {"ms": ns / n / 1e6, "vswitchd_ms": vsd * 10 / n, "ovsdb_ms": db * 10 / n, "calls": n}
    return out


def report(empty: dict[str, dict[str, float]], full: dict[str, dict[str, float]], ports: int) -> str:
    lines = [
        f"| call | ms, empty | ms, {ports} ports | ratio | OVS CPU ms, empty / full (vswitchd + ovsdb) |",
        "|---|---|---|---|---|",
    ]
    for name, e in empty.items():
        f = full.get(name)
        if f is None:
            continue
        cpu_e = e["vswitchd_ms"] + e["ovsdb_ms"]
        cpu_f = f["vswitchd_ms"] + f["ovsdb_ms"]
        lines.append(
            f"| {name} | {e['ms']:.1f} | {f['ms']:.1f} | {f['ms'] / e['ms']:.1f} | "
            f"{cpu_e:.0f} / {cpu_f:.0f} ({f['vswitchd_ms']:.0f} + {f['ovsdb_ms']:.0f}) |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.ovscalls", description=__doc__)
    ap.add_argument("--host", default=bl.NETWORK)
    ap.add_argument("--ports", type=int, default=480)
    ap.add_argument("--calls", type=int, default=20, help="calls per read case (half per write case)")
    args = ap.parse_args(argv)
    kind = "internal" if args.host == bl.NETWORK else "tap"
    if lab("status", check=False).returncode != 0:
        lab("up")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out: dict[str, Any] = {"started": stamp, "host": args.host, "ports": args.ports}
    with testbed_lock("bench"):
        count0 = remote(args.host, "ovs-vsctl list-ports br-int | wc -l").strip()
        log(f"{args.host}: {count0} ports; the empty bridge")
        out["empty"] = parse(remote(args.host, script(args.calls)))
        try:
            log(f"filling with {args.ports} {kind} ports")
            out["filled_ports"] = int(remote(args.host, f"set -- {args.ports} {kind}\n{FILL}").strip())
            log("the full bridge")
            out["full"] = parse(remote(args.host, script(args.calls)))
        finally:
            count1 = remote(args.host, UNFILL).strip()
        out["ports_equal"] = count0 == count1
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stamp}-ovscalls-{args.host}.json").write_text(json.dumps(out, indent=2) + "\n")
    print(report(out["empty"], out.get("full", {}), out.get("filled_ports", args.ports)))
    print(f"ports before/after equal: {out['ports_equal']}")
    return 0 if out["ports_equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
