"""``python -m lab up|down|status|scan|vm ...``"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from lab import cloud_image, guest, image, scan, testbed, vms
from lab.common import DEFAULT_WORKERS, LabError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lab", description="cloudrepo testbed (run as root)")
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="bring the testbed up (idempotent)")
    up.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    sub.add_parser("down", help="remove everything the testbed made")
    sub.add_parser("status", help="short summary; exit 0 when up, 1 otherwise")
    sc = sub.add_parser("scan", help="JSON of every network object on each host")
    sc.add_argument("host", nargs="?")
    vm = sub.add_parser("vm", help="guests attached to TAPs")
    vsub = vm.add_subparsers(dest="vmcmd", required=True)
    st = vsub.add_parser("start", help="start a guest (or add an interface) attached to an existing TAP")
    st.add_argument("name")
    st.add_argument("--host", required=True)
    st.add_argument("--tap", required=True)
    st.add_argument("--iface", default="eth1")
    st.add_argument("--mac")
    dh = vsub.add_parser("dhcp", help="run dhclient once on a guest interface; prints the address")
    dh.add_argument("name")
    dh.add_argument("--iface", default="eth1")
    dh.add_argument("--timeout", type=int, default=guest.DHCP_TIMEOUT)
    ex = vsub.add_parser("exec", help="run a command inside the guest: vm exec NAME -- CMD...")
    ex.add_argument("name")
    ex.add_argument("command", nargs=argparse.REMAINDER)
    sp = vsub.add_parser("stop", help="stop a guest and delete its namespace")
    sp.add_argument("name")
    vsub.add_parser("list", help="list guests")
    im = sub.add_parser(
        "image", help='build (once) the tiny QEMU guest; prints {"kernel": PATH, "initrd": PATH}'
    )
    im.add_argument(
        "--cloud",
        action="store_true",
        help="the Debian cloud image instead (systemd, cloud-init, sshd); "
        'prints {"image", "kernel", "initrd", "append"}',
    )
    gq = sub.add_parser("guest", help="launched QEMU guests of a stack")
    gsub = gq.add_subparsers(dest="guestcmd", required=True)
    gx = gsub.add_parser("exec", help="run a command in a launched VM: guest exec --stack S VM -- CMD...")
    gx.add_argument("--stack", required=True)
    gx.add_argument("--timeout", type=float, default=60)
    gx.add_argument("vm")
    gx.add_argument("command", nargs=argparse.REMAINDER)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except LabError as exc:
        print(f"lab: error: {exc}", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace) -> int:
    if args.cmd == "up":
        t0 = time.monotonic()
        inv = testbed.up(args.workers)
        hosts = ", ".join(f"{h}=127.0.0.1:{v['port']}" for h, v in sorted(inv["hosts"].items()))
        print(f"testbed up in {time.monotonic() - t0:.1f}s: {hosts}; internet {inv['internet']['url']}")
        return 0
    if args.cmd == "down":
        t0 = time.monotonic()
        testbed.down()
        print(f"testbed down in {time.monotonic() - t0:.1f}s")
        return 0
    if args.cmd == "status":
        ok, lines = testbed.status()
        print("\n".join(lines))
        return 0 if ok else 1
    if args.cmd == "scan":
        inventory = testbed.read_inventory()
        if inventory is None:
            raise LabError("the testbed is down")
        names = sorted(inventory["hosts"])
        if args.host:
            if args.host not in names:
                raise LabError(f"unknown host {args.host!r}; hosts: {', '.join(names)}")
            names = [args.host]
        sys.stdout.write(scan.dumps(scan.scan(names)))
        return 0
    if args.cmd == "vm":
        return _vm(args)
    if args.cmd == "image":
        print(json.dumps(cloud_image.build() if args.cloud else image.guest()))
        return 0
    if args.cmd == "guest":
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        if not command:
            raise LabError("guest exec --stack STACK VM -- CMD...")
        result = vms.exec_in(vms.stack_outputs(args.stack)["vms"], args.vm, command, args.timeout)
        sys.stdout.write(result.stdout)
        return result.returncode
    raise AssertionError(args.cmd)


def _vm(args: argparse.Namespace) -> int:
    if args.vmcmd == "start":
        with testbed.locked():
            rec = guest.start(args.name, args.host, args.tap, args.iface, args.mac)
        print(f"guest {rec['name']}: {rec['iface']} ({rec['mac']}) on {rec['host']}/{rec['tap']}")
        return 0
    if args.vmcmd == "dhcp":
        print(guest.dhcp(args.name, args.iface, args.timeout))
        return 0
    if args.vmcmd == "exec":
        command = args.command
        if command and command[0] == "--":
            command = command[1:]
        if not command:
            raise LabError("vm exec NAME -- CMD...")
        return subprocess.run(guest.exec_argv(args.name, command), check=False).returncode
    if args.vmcmd == "stop":
        with testbed.locked():
            guest.stop(args.name)
        return 0
    if args.vmcmd == "list":
        for name in guest.known_guests():
            ifaces = guest.interfaces(name)
            desc = ", ".join(f"{i}->{r['host']}/{r['tap']}" for i, r in sorted(ifaces.items()))
            print(f"{name}: {desc}")
        return 0
    raise AssertionError(args.vmcmd)
