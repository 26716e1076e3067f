"""One Open vSwitch per simulated host, run inside the host's namespace from its own directory."""

from __future__ import annotations

from pathlib import Path

from lab.common import BRIDGE, TRUNK_IFACE, HostPaths, LabError, host_ns, run
from lab.procs import pidfile_process, stop_pidfile

SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")


def _env(paths: HostPaths) -> list[str]:
    d = str(paths.ovs)
    return ["env", f"OVS_RUNDIR={d}", f"OVS_LOGDIR={d}", f"OVS_DBDIR={d}"]


def db_socket(paths: HostPaths) -> str:
    return f"unix:{paths.ovs / 'db.sock'}"


def vsctl(paths: HostPaths, *args: str, check: bool = True) -> str:
    argv = ["ovs-vsctl", f"--db={db_socket(paths)}", "--timeout=10", *args]
    return run(argv, check=check).stdout


def running(paths: HostPaths) -> bool:
    return (
        pidfile_process(paths.ovs / "ovsdb-server.pid", "ovsdb-server") is not None
        and pidfile_process(paths.ovs / "ovs-vswitchd.pid", "ovs-vswitchd") is not None
    )


def start(paths: HostPaths) -> None:
    """Start ovsdb-server and ovs-vswitchd for the host (each only if not running), then br-int + trunk."""
    ns = host_ns(paths.name)
    paths.ovs.mkdir(parents=True, exist_ok=True)
    d = paths.ovs
    db = d / "conf.db"
    if not db.exists():
        run(["ovsdb-tool", "create", str(db), str(SCHEMA)])
    if pidfile_process(d / "ovsdb-server.pid", "ovsdb-server") is None:
        run(
            [
                "ip",
                "netns",
                "exec",
                ns,
                *_env(paths),
                "ovsdb-server",
                str(db),
                f"--remote=punix:{d / 'db.sock'}",
                "--remote=db:Open_vSwitch,Open_vSwitch,manager_options",
                f"--pidfile={d / 'ovsdb-server.pid'}",
                f"--log-file={d / 'ovsdb-server.log'}",
                "--detach",
            ]
        )
        vsctl(paths, "--no-wait", "init")
    if pidfile_process(d / "ovs-vswitchd.pid", "ovs-vswitchd") is None:
        run(
            [
                "ip",
                "netns",
                "exec",
                ns,
                *_env(paths),
                "ovs-vswitchd",
                db_socket(paths),
                f"--pidfile={d / 'ovs-vswitchd.pid'}",
                f"--log-file={d / 'ovs-vswitchd.log'}",
                "--detach",
            ]
        )
    if not running(paths):
        raise LabError(f"{paths.name}: Open vSwitch did not start; see {d}/*.log")
    current = vsctl(paths, "--if-exists", "get", "bridge", BRIDGE, "datapath_type").strip()
    if current != "netdev":
        vsctl(paths, "--may-exist", "add-br", BRIDGE, "--", "set", "bridge", BRIDGE, "datapath_type=netdev")
    ports = vsctl(paths, "list-ports", BRIDGE).split()
    if TRUNK_IFACE not in ports:
        vsctl(paths, "--may-exist", "add-port", BRIDGE, TRUNK_IFACE)


def stop(paths: HostPaths) -> None:
    d = paths.ovs
    stop_pidfile(d / "ovs-vswitchd.pid", "ovs-vswitchd")
    stop_pidfile(d / "ovsdb-server.pid", "ovsdb-server")
