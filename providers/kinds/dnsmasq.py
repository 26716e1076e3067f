"""A VLAN's dnsmasq as a process: its command line, its files, and how it is found, stopped and reloaded.

dnsmasq is alive only if the pid file's process exists and its /proc cmdline names this VLAN's pid file and
interface; it is stopped by that pid (TERM, wait, KILL), never by name. Its state lives in
`/var/lib/cloudrepo/dhcp/vlanN/`: pid file, lease file, log, each slice's reservations in
`hosts.d/<owner mark>`, and `hosts`, their concatenation, which dnsmasq reads (`--dhcp-hostsfile`). A change
rewrites `hosts` atomically only when its content differs and then sends SIGHUP to that pid, so dnsmasq
re-reads it and keeps its leases; no inotify instance per server (`--dhcp-hostsdir` needed one, and Linux
allows 128 per user).

dnsmasq runs as root only to start: it re-reads its reservations as `nobody` (its default `--user`),
after dropping privileges, so they are the one state that others may read: the directories down to
`hosts.d` may be passed through (0711), `hosts.d` listed (0755), its files and `hosts` read (0644).
Everything else is made under the scripts' umask 077 (pid file, leases, log, owner: root's alone).
"""

from __future__ import annotations

from transport.script import Step, sh
from vocabulary import naming
from vocabulary.specs import DhcpNamespaceSpec

# Constant sh programs; every variable part is a positional argument, never spliced into the text.
_PID = 'pid() { p=$(cat "$1" 2>/dev/null) || p=; case "$p" in ""|*[!0-9]*) p=;; esac; }; '
"""`pid FILE`: the pid file's number in $p, or $p empty (no file, or not a number)."""
_PROC = (
    _PID + 'pid "$1"; [ -n "$p" ] && [ -r "/proc/$p/cmdline" ] || exit 0; '
    'printf "%s\\n" "$p"; tr "\\000" "\\n" <"/proc/$p/cmdline"'
)
_OURS = (
    'ours() { [ -r "/proc/$p/cmdline" ] && tr "\\000" "\\n" <"/proc/$p/cmdline" | grep -qxF -e "$2" '
    '&& tr "\\000" "\\n" <"/proc/$p/cmdline" | grep -qxF -e "$3"; }; '
)
"""`ours FILE MARK1 MARK2`: $p's process runs with both markers in its argv (this VLAN's server)."""
_STOP = (
    _PID + _OURS + 'pid "$1"; [ -n "$p" ] || { rm -f "$1"; exit 0; }; '
    'if ours "$@"; then kill -TERM "$p" 2>/dev/null; i=0; '
    'while ours "$@" && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i+1)); done; '
    'if ours "$@"; then kill -KILL "$p"; sleep 0.1; fi; fi; rm -f "$1"'
)
# $1 pid file, $2 $3 its markers, $4 the namespace, then dnsmasq's argv: start it, unless the pid file names
# a running server of this VLAN (started by another slice's locked change since this plan's read: a shared
# VLAN's server is read outside the lock), which is sent SIGHUP instead, to read the reservations assembled
_START = (
    _PID
    + _OURS
    + 'pid "$1"; if [ -n "$p" ] && ours "$1" "$2" "$3"; then kill -HUP "$p"; echo "running: $p"; exit 0; fi; '
    'ns=$4; shift 4; exec ip netns exec "$ns" "$@"'
)
# $1 lease file, then MACs whose leases go
_PRUNE = (
    'f=$1; shift; [ -f "$f" ] || exit 0; : >"$f.tmp" || exit 1; '
    'while read -r exp mac rest; do drop=0; for m in "$@"; do [ "$m" = "$mac" ] && drop=1; done; '
    '[ "$drop" = 1 ] || printf "%s %s %s\n" "$exp" "$mac" "$rest" >>"$f.tmp"; done <"$f"; mv -f "$f.tmp" "$f"'
)
# $1 state root, $2 the VLAN's directory, $3 the slice's reservations file, $4 its text
_WRITE_HOSTS = (
    'mkdir -p "$2/hosts.d" && chmod 0711 "$1" "$1/dhcp" "$2" && chmod 0755 "$2/hosts.d" && '
    't="$2/hosts.d/.${3##*/}.tmp" && printf "%s" "$4" >"$t" && chmod 0644 "$t" && mv -f "$t" "$3"'
)
# $1 the VLAN's directory, $2 pid file, $3 $4 its markers, $5 "hup" to signal the server on a change:
# `hosts` made from hosts.d/* through a dotfile, replaced only when it differs ("changed" printed)
_ASSEMBLE = (
    'd=$1; t="$d/.hosts.tmp"; : >"$t" || exit 1; for f in "$d"/hosts.d/*; do [ -f "$f" ] || continue; '
    'cat "$f" >>"$t" || exit 1; done; chmod 0644 "$t" || exit 1; '
    'if [ -f "$d/hosts" ] && cmp -s "$t" "$d/hosts"; then rm -f "$t"; exit 0; fi; '
    'mv -f "$t" "$d/hosts" || exit 1; '
    'echo changed; [ "$5" = hup ] || exit 0; '
    + _PID
    + _OURS
    + 'pid "$2"; if [ -n "$p" ] && ours "$2" "$3" "$4"; then kill -HUP "$p"; fi'
)
DNS_OPTION = "--dhcp-option=6,"


def state_dir(spec: DhcpNamespaceSpec) -> str:
    return naming.dhcp_dir(spec.vlan)


def pid_file(spec: DhcpNamespaceSpec) -> str:
    return f"{state_dir(spec)}/dnsmasq.pid"


def hosts_file(spec: DhcpNamespaceSpec) -> str:
    """The slice's reservations, named by its owner mark (`naming.owner_mark`)."""
    return f"{state_dir(spec)}/hosts.d/{spec.owner}"


def legacy_hosts_file(spec: DhcpNamespaceSpec) -> str | None:
    """The file named by the bare slice (made before slices had uids) that the slice adopts, if it has
    a uid."""
    return f"{state_dir(spec)}/hosts.d/{spec.slice}" if spec.uid is not None else None


def assembled_file(spec: DhcpNamespaceSpec) -> str:
    """Every slice's reservations on the VLAN in one file: the one dnsmasq reads."""
    return f"{state_dir(spec)}/hosts"


def leases_file(spec: DhcpNamespaceSpec) -> str:
    return f"{state_dir(spec)}/leases"


def dnsmasq_args(spec: DhcpNamespaceSpec) -> list[str]:
    """dnsmasq's argv (as /proc/<pid>/cmdline shows it): daemonizes, writes its pid file, serves DHCP only."""
    d = state_dir(spec)
    args = [
        "dnsmasq",
        "--conf-file=/dev/null",
        "--no-hosts",
        "--no-resolv",
        "--port=0",
        f"--pid-file={d}/dnsmasq.pid",
        f"--interface={spec.port}",
        "--bind-interfaces",
        "--except-interface=lo",
        f"--dhcp-range={spec.range_start},{spec.range_end},{spec.lease_time}",
        f"--dhcp-option=3,{spec.router}",
    ]
    if spec.dns_servers:
        args.append(f"--dhcp-option=6,{','.join(spec.dns_servers)}")
    args += [
        f"--dhcp-leasefile={d}/leases",
        f"--dhcp-hostsfile={d}/hosts",
        "--log-dhcp",
        f"--log-facility={d}/dnsmasq.log",
    ]
    return args


def legacy_args(spec: DhcpNamespaceSpec) -> list[str]:
    """The argv of a server started before `--dhcp-hostsfile`: the same with `--dhcp-hostsdir`."""
    hostsfile = f"--dhcp-hostsfile={assembled_file(spec)}"
    return [f"--dhcp-hostsdir={state_dir(spec)}/hosts.d" if a == hostsfile else a for a in dnsmasq_args(spec)]


def proc_markers(spec: DhcpNamespaceSpec) -> tuple[str, str]:
    """What a process's cmdline must hold to be this VLAN's dnsmasq."""
    return f"--pid-file={pid_file(spec)}", f"--interface={spec.port}"


def proc_probe(spec: DhcpNamespaceSpec) -> Step:
    """Prints the pid file's pid and its process's cmdline, a line each (nothing when not running)."""
    return sh("dnsmasq", _PROC, pid_file(spec), kind="probe")


def parse_proc(text: str) -> tuple[int | None, tuple[str, ...]]:
    """(pid, cmdline) from `proc_probe`'s output."""
    lines = text.splitlines()
    pid = int(lines[0]) if lines and lines[0].isdigit() else None
    return pid, tuple(lines[1:]) if pid is not None else ()


def dns_servers_of(option: str | None) -> str:
    """The servers a DNS option gives, as text ("none" without one)."""
    return (option or DNS_OPTION).removeprefix(DNS_OPTION) or "none"


def dns_option(cmdline: tuple[str, ...] | list[str]) -> str | None:
    return next((a for a in cmdline if a.startswith(DNS_OPTION)), None)


def write_hosts_step(spec: DhcpNamespaceSpec, text: str) -> Step:
    """Write the slice's reservations atomically, readable by dnsmasq's unprivileged user."""
    return sh("write reservations", _WRITE_HOSTS, naming.STATE_ROOT, state_dir(spec), hosts_file(spec), text)


def stop_step(spec: DhcpNamespaceSpec) -> Step:
    return sh("stop dnsmasq", _STOP, pid_file(spec), *proc_markers(spec))


def assemble_step(spec: DhcpNamespaceSpec, *, reload: bool) -> Step:
    """Rebuild `hosts` from `hosts.d` when it differs; with `reload`, SIGHUP the running server then (not
    otherwise: a server whose reservations did not change is never signalled)."""
    mode = "hup" if reload else "keep"
    return sh("assemble reservations", _ASSEMBLE, state_dir(spec), pid_file(spec), *proc_markers(spec), mode)


def start_step(spec: DhcpNamespaceSpec) -> Step:
    """Start the server in its namespace; a server already running there (its pid file's, of this VLAN) is
    reloaded instead, so two plans that both found none never leave two servers on one VLAN."""
    return sh(
        "start dnsmasq", _START, pid_file(spec), *proc_markers(spec), spec.namespace, *dnsmasq_args(spec)
    )


def prune_step(spec: DhcpNamespaceSpec, macs: list[str]) -> Step:
    """Drop the leases of `macs` from the lease file (dnsmasq stopped: it reads the file only at start)."""
    return sh("drop stale leases", _PRUNE, leases_file(spec), *macs)
