"""`cloudrepo`: the operators' verbs on slices (one Pulumi stack each). Exit codes: 0 ok, 1 failed, 2 usage.

Every edit is checked with the rules `pulumi preview` applies (config, VLAN allocation against the stack's
memory, plan) before the stack config file is written; a refused edit writes nothing.

About 380 lines: the argument parser of every verb (one table of subcommands and their options) and
the dispatch; what each verb does lives in `edits.py`, `engine.py`, `stackfile.py`, `tables.py`,
`diagram.py` and `console.py` (with `hostaccess.py`, the worker's login).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import paramiko
from pulumi import automation as auto

from cloudrepo import (
    capture,
    checkplan,
    checkrun,
    console,
    edits,
    guestssh,
    hostaccess,
    images,
    snapshot,
    snapshots,
    stackfile,
    tables,
    top,
    workers,
)
from cloudrepo.diagram import diagram_format, write_diagram
from cloudrepo.engine import ROOT, SliceError, Slices, apply_environment, command_failure, decrypt_config
from components.image_store import Registry, open_store
from components.model import NAMESPACE
from components.topology import MIN_VMS
from transport import capture as capture_stream
from transport.interrupt import Late, first_interrupt, gather
from vocabulary.errors import ConfigError
from vocabulary.shown import shown, shown_path
from vocabulary.ssh_input import SSH_KEY_SECRET

OK, FAILED, USAGE = 0, 1, 2
STACK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
"""A slice's stack name as this command takes it: Pulumi's stack name characters, starting with a letter or
digit (no option look-alike, no '.' or '..'), so `Pulumi.NAME.yaml` stays a file of the project."""


def say(text: str) -> None:
    print(text, flush=True)


def fail(text: str) -> None:
    prefix = "" if text.startswith("cloudrepo:") else "cloudrepo: "
    print(f"{prefix}{text}", file=sys.stderr, flush=True)


def stack_name(text: str) -> str:
    """argparse type of NAME: a stack name (`STACK_NAME`)."""
    if not STACK_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{shown(text)} is not a slice name: 1..100 letters, digits, '_', '.' and '-', starting with a "
            "letter or digit"
        )
    return text


def _project(args: argparse.Namespace) -> Path:
    if args.project:
        try:
            return Path(args.project).resolve()
        except (OSError, ValueError) as exc:
            raise SliceError(
                f"--project {shown_path(args.project)}: not a usable directory ({exc})"
            ) from None
    here = Path.cwd()
    return here if (here / "Pulumi.yaml").exists() else ROOT


def _checked(config: dict[str, Any], name: str, outputs: dict[str, Any], project: Path) -> stackfile.Prepared:
    try:
        return stackfile.check(config, name, outputs, project)
    except ConfigError as exc:
        raise SliceError(str(exc)) from exc


def _edit(
    args: argparse.Namespace, change: Callable[[dict[str, Any]], dict[str, Any]], done: Callable[[], str]
) -> int:
    slices = Slices(_project(args))
    path = stackfile.stack_file(slices.project, args.name)
    if not path.exists():
        raise SliceError(f"no slice {args.name!r} in this checkout ({path} is missing)")
    doc = stackfile.read(path)
    config = stackfile.config_of(doc)
    current = config.get(stackfile.SLICE_KEY) or {}
    if not isinstance(current, dict):
        raise SliceError(f"{shown_path(path)}: {stackfile.SLICE_KEY} is not an object, got {shown(current)}")
    section = change(dict(current))
    config[stackfile.SLICE_KEY] = section
    _checked(config, args.name, slices.outputs(args.name), slices.project)
    stackfile.write(path, {**doc, "config": config})
    say(f"slice {args.name}: {done()} (not deployed yet: cloudrepo deploy {args.name})")
    return OK


def _cloud_settings(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """Every `cloudrepo:` setting of a stack config file but the slice: plain values as they are, secrets
    decrypted (to be encrypted again for the new stack)."""
    wanted = {
        k: v
        for k, v in stackfile.config_of(stackfile.read(path)).items()
        if k.startswith(f"{NAMESPACE}:") and k != stackfile.SLICE_KEY
    }
    secret_keys = {k for k, v in wanted.items() if isinstance(v, dict) and set(v) == {"secure"}}
    plain = {k: v for k, v in wanted.items() if k not in secret_keys}
    if not secret_keys:
        return plain, {}
    values = decrypt_config(path)
    return plain, {k: values[k].value for k in secret_keys}


def cmd_slice_create(args: argparse.Namespace) -> int:
    slices = Slices(_project(args))
    path = stackfile.stack_file(slices.project, args.name)
    if path.exists() or slices.exists(args.name):
        raise SliceError(f"slice {args.name!r} already exists ({path} or the backend has it)")
    base = _from_file(Path(args.from_file)) if args.from_file else None
    pool = args.pool if args.pool is not None else _file_pool(base)
    if pool is None:
        raise SliceError("--pool START is needed (the file given with --from has no vlanPool)")
    plain, secrets = _cloud_settings(Path(args.cloud)) if args.cloud else ({}, {})
    config = {**plain, stackfile.SLICE_KEY: edits.new_slice(int(pool), base)}
    _checked({**config, **{k: {"secure": "?"} for k in secrets}}, args.name, {}, slices.project)
    slices.create(args.name)
    doc = stackfile.read(path)
    stackfile.write(path, {**doc, "config": config})
    for key, value in secrets.items():
        slices.set_secret(args.name, key, value)
    say(f"slice {args.name} created in {path.name} (VLAN pool {pool}..{int(pool) + 19})")
    return OK


def _from_file(path: Path) -> dict[str, Any]:
    """The slice section of a `--from` file; the other keys it carries are named on stderr, not taken."""
    section, left = stackfile.slice_from_yaml(path)
    if left:
        named = ", ".join(k if k.isprintable() and len(k) <= 60 else shown(k) for k in left[:20])
        more = f" and {len(left) - 20} more" if len(left) > 20 else ""
        fail(
            f"warning: --from {shown_path(path)}: took only the slice ({stackfile.SLICE_KEY}); left out "
            f"{named}{more} (the operator's keys come from --cloud or the slice's stack config file)"
        )
    return section


def _file_pool(section: dict[str, Any] | None) -> int | None:
    """`vlanPool.start` of a `--from` section when it is an integer; None when it is not there."""
    pool = (section or {}).get("vlanPool")
    start = pool.get("start") if isinstance(pool, dict) else pool
    if start is None:
        return None
    if not isinstance(start, int) or isinstance(start, bool):
        raise SliceError(
            f"--from: {stackfile.SLICE_KEY}.vlanPool.start must be an integer, got {shown(start)}"
        )
    return start


def cmd_vm_add(args: argparse.Namespace) -> int:
    return _edit(
        args,
        lambda s: edits.add_vm(s, args.id, args.worker, args.data_interfaces, args.internet),
        lambda: f"VM {args.id} added on {args.worker}",
    )


def cmd_vm_rm(args: argparse.Namespace) -> int:
    notes: list[str] = []

    def change(section: dict[str, Any]) -> dict[str, Any]:
        out, more = edits.rm_vm(section, args.id)
        notes.extend(more)
        return out

    return _edit(args, change, lambda: f"VM {args.id} removed" + "".join(f"; {n}" for n in notes))


def cmd_link_add(args: argparse.Namespace) -> int:
    pin = f" on VLAN {args.vlan}" if args.vlan is not None else ""
    return _edit(
        args,
        lambda s: edits.add_link(s, args.a, args.b, args.vlan),
        lambda: f"link {args.a} -- {args.b}{pin} added",
    )


def cmd_link_rm(args: argparse.Namespace) -> int:
    return _edit(
        args, lambda s: edits.rm_link(s, args.a, args.b), lambda: f"link {args.a} -- {args.b} removed"
    )


def cmd_topology_add(args: argparse.Namespace) -> int:
    ids = " ".join(map(str, args.ids))
    return _edit(
        args, lambda s: edits.add_topology(s, args.preset, args.ids), lambda: f"{args.preset} of {ids} added"
    )


def _engine(verb: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        Slices(_project(args)).run(verb, args.name, say)
        return OK

    return run


def cmd_show(args: argparse.Namespace) -> int:
    say(tables.show(args.name, Slices(_project(args)).outputs(args.name)))
    return OK


def cmd_list(args: argparse.Namespace) -> int:
    slices = Slices(_project(args))
    rows = []
    for name in slices.names():
        update = slices.last_update(name)
        outputs = slices.outputs(name)
        rows.append(
            tables.list_row(
                name, outputs, *(update.kind, update.result, update.end) if update else (None,) * 3
            )
        )
    say(tables.list_table(rows))
    return OK


def cmd_destroy(args: argparse.Namespace) -> int:
    if not args.yes:
        if not sys.stdin.isatty():
            fail(f"destroy {args.name}: not a terminal, pass --yes to confirm")
            return USAGE
        answer = input(f"Destroy slice {args.name}: every object it made on the hosts goes. Type its name: ")
        if answer.strip() != args.name:
            say("not destroyed")
            return FAILED
    slices = Slices(_project(args))
    slices.run("destroy", args.name, say)
    snapshots.delete_all(slices, args.name, say)
    if args.rm:
        slices.remove(args.name)
        say(f"slice {args.name} removed from the backend, with its stack config file")
    return OK


def cmd_diagram(args: argparse.Namespace) -> int:
    out = Path(args.output)
    try:
        diagram_format(out)
    except ValueError as exc:
        fail(str(exc))
        return USAGE
    outputs = Slices(_project(args)).outputs(args.name)
    if not outputs:
        raise SliceError(f"slice {args.name!r} is not deployed: no outputs to draw")
    say(str(write_diagram(outputs, out).resolve()))
    return OK


def cmd_ssh(args: argparse.Namespace) -> int:
    slices = Slices(_project(args))
    outputs = slices.outputs(args.name)
    return guestssh.ssh(
        outputs,
        slices.project,
        args.name,
        args.vm,
        args.identity,
        args.command or [],
        lambda: slices.secret(args.name, SSH_KEY_SECRET),
    )


def cmd_exec(args: argparse.Namespace) -> int:
    if not args.command:
        fail("exec: give the command after `--` (cloudrepo exec NAME [--vm ID ...] -- CMD ...)")
        return USAGE
    slices = Slices(_project(args))
    outputs = slices.outputs(args.name)
    results = guestssh.exec_all(
        outputs, slices.project, args.name, args.vm or [], args.identity, args.command,
        lambda: slices.secret(args.name, SSH_KEY_SECRET),
        args.timeout,
    )  # fmt: skip
    if args.json:
        say(json.dumps([r.__dict__ for r in results], indent=2))
    else:
        say(tables.exec_table([(r.vm, r.exit, r.stdout + r.stderr) for r in results]))
    return OK if all(r.exit == 0 for r in results) else FAILED


COMMAND_VERBS = ("ssh", "exec")
"""The verbs that take a command after `--` (every word after it is the command's)."""


def log_lines(text: str) -> int:
    """argparse type of `--lines`: 1..`console.MAX_LINES`."""
    if not text.isdigit() or not 1 <= int(text) <= console.MAX_LINES:
        raise argparse.ArgumentTypeError(f"{shown(text)} is not a line count (1..{console.MAX_LINES})")
    return int(text)


def cmd_console(args: argparse.Namespace) -> int:
    if args.lines is not None and not args.log:
        fail("console: --lines goes with --log")
        return USAGE
    slices = Slices(_project(args))
    target = console.target(args.name, args.vm, slices.outputs(args.name))
    endpoint, login = hostaccess.worker_login(slices, args.name, target.worker)
    client = hostaccess.connect(endpoint, login)
    try:
        if args.log:
            text = console.show_log(client, target, args.lines or console.DEFAULT_LINES, login.sudo)
            say(text.rstrip("\n") if text.strip() else f"(the console log of vm {args.vm} is empty)")
            return OK
        return console.attach(client, target, login.sudo, 3 * login.connect_timeout, _status)
    except (paramiko.SSHException, EOFError) as exc:
        raise SliceError(f"{target.worker}: the SSH session failed: {exc or type(exc).__name__}") from None
    finally:
        client.close()


def cmd_check(args: argparse.Namespace) -> int:
    slices = Slices(_project(args))
    outputs = slices.outputs(args.name)
    if not outputs:
        raise SliceError(
            f"slice {args.name!r} is not deployed: no guests to check (cloudrepo deploy {args.name})"
        )
    path = stackfile.stack_file(slices.project, args.name)
    if not path.exists():
        raise SliceError(f"slice {args.name!r}: {path.name} is not in this checkout; its checks are there")
    checks = _checked(
        stackfile.config_of(stackfile.read(path)), args.name, outputs, slices.project
    ).config.checks
    if not checks:
        fail(f"check: slice {args.name!r} declares no checks ({NAMESPACE}:slice.checks): nothing proven")
        return FAILED
    shell = checkrun.CloudShell(slices, args.name, outputs, args.identity)
    try:
        rows = checkrun.run(checkplan.plan(checks, outputs), shell, shell.path, args.wait)
    finally:
        shell.close()
    ok = all(r.ok for r in rows)
    say(json.dumps(tables.check_json(args.name, rows), indent=2) if args.json else tables.check_table(rows))
    return OK if ok else FAILED


def cmd_workers(args: argparse.Namespace) -> int:
    slices = Slices(_project(args))
    names = args.names or sorted(
        f.name[len("Pulumi.") : -len(".yaml")] for f in slices.project.glob("Pulumi.*.yaml")
    )
    configs = {}
    for name in names:
        path = stackfile.stack_file(slices.project, name)
        if not path.exists():
            raise SliceError(f"slice {name!r}: {path.name} is not in this checkout (pass --project DIR)")
        configs[name] = stackfile.config_of(stackfile.read(path)).get(hostaccess.WORKERS_KEY) or {}
    reports = []
    for host in workers.hosts(configs):
        reports.append(read_worker(slices, host))
    if args.json:
        print(json.dumps(workers.as_json(reports), indent=2))
    else:
        say(workers.table(reports) if reports else "no workers in the stack files")
    return FAILED if any(r.error for r in reports) else OK


def read_worker(slices: Slices, host: workers.Host) -> workers.WorkerReport:
    """One worker's report: one login, one command (`workers.REPORT`)."""
    try:
        endpoint, login = hostaccess.worker_login(slices, host.slice, host.name)
        client = hostaccess.connect(endpoint, login)
    except SliceError as exc:
        return workers.WorkerReport(host.name, capacity=host.capacity, error=str(exc))
    try:
        out, err, status = console.run_command(client, workers.report_argv(), login.sudo)
    except (paramiko.SSHException, EOFError) as exc:
        return workers.WorkerReport(host.name, capacity=host.capacity, error=f"the SSH session failed: {exc}")
    finally:
        client.close()
    if status != 0:
        said = err.decode(errors="replace").strip()
        return workers.WorkerReport(host.name, capacity=host.capacity, error=f"status {status}: {said}")
    return workers.parse_report(host.name, out.decode(errors="replace"), host.capacity)


def _sampler(
    login: tuple[paramiko.SSHClient, bool], worker: str, vms: list[int]
) -> Callable[[], list[top.VmUsage]]:
    """One sample of `vms` on `worker` over its connection, as a call `gather` can run."""

    def call() -> list[top.VmUsage]:
        client, sudo = login
        out, err, status = console.run_command(client, top.sample_argv(vms), sudo)
        if status != 0:
            raise SliceError(f"{worker}: the sample failed ({status}): {err.decode(errors='replace')}")
        return top.parse_sample(worker, out.decode(errors="replace"))

    return call


def cmd_top(args: argparse.Namespace) -> int:
    if args.json and not args.once:
        fail("top: --json goes with --once")
        return USAGE
    slices = Slices(_project(args))
    outputs = slices.outputs(args.name)
    placed = top.launched(outputs)
    if not placed:
        raise SliceError(f"slice {args.name!r} has no launched VM (or is not deployed)")
    clients = {}
    try:
        for worker in placed:
            endpoint, login = hostaccess.worker_login(slices, args.name, worker)
            clients[worker] = (hostaccess.connect(endpoint, login), login.sudo)
        calls = {worker: _sampler(clients[worker], worker, vms) for worker, vms in placed.items()}
        with first_interrupt() as stop:
            while True:
                try:
                    samples = gather(calls, stop, top.SAMPLE_SECONDS)
                except Late as late:
                    raise SliceError(f"no sample from {late} within {top.SAMPLE_SECONDS:.0f} s") from None
                if samples is None:
                    break
                rows = [row for worker in placed for row in samples[worker]]
                if args.once:
                    if args.json:
                        print(json.dumps(top.as_json(rows), indent=2))
                    else:
                        say(top.table(args.name, rows, time.strftime("%H:%M:%S")))
                    return OK
                frame = top.table(args.name, rows, time.strftime("%H:%M:%S"))
                sys.stdout.write("\x1b[H\x1b[2J" + frame + "\n")
                sys.stdout.flush()
                if stop.wait(args.interval):
                    break
        return OK
    except (paramiko.SSHException, EOFError) as exc:
        raise SliceError(f"the SSH session failed: {exc or type(exc).__name__}") from None
    finally:
        for client, _ in clients.values():
            client.close()


def interval(text: str) -> float:
    """argparse type of `--interval`: 0..3600 seconds."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"{shown(text)} is not a number of seconds (0..3600)")
    return value


def _status(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def cmd_capture(args: argparse.Namespace) -> int:
    to_stdout = args.write == "-"
    if to_stdout and sys.stdout.isatty():
        fail(
            "capture: pcap is binary: write it to a file (-w FILE.pcap) or pipe it (-w - | wireshark -k -i -)"
        )
        return USAGE
    slices = Slices(_project(args))
    outputs = slices.outputs(args.name)
    if not outputs:
        raise SliceError(f"slice {args.name!r} is not deployed: no link to capture")
    where = capture.target(args.name, outputs, args.link)
    endpoint, settings = hostaccess.worker_login(slices, args.name, where.worker)
    fail(f"capture: {where.tap} on {where.worker}, link {where.label}; Ctrl-C stops")
    out = sys.stdout.buffer if to_stdout else _pcap_file(Path(args.write))
    try:
        status, stopped = capture_stream.stream(
            endpoint, settings, where.tap, args.count or 0, args.filter or "", out,
            lambda text: print(text, end="", file=sys.stderr, flush=True),
        )  # fmt: skip
    finally:
        if not to_stdout:
            out.close()
    if status != 0 and not stopped:
        fail(f"capture: tcpdump on {where.worker} ended with status {status}")
        return FAILED
    return OK


def cmd_snapshot_save(args: argparse.Namespace) -> int:
    snapshots.save(Slices(_project(args)), args.name, args.snap, say)
    return OK


def cmd_snapshot_list(args: argparse.Namespace) -> int:
    slices = Slices(_project(args))
    slices.outputs(args.name)  # an unknown slice is an error, not an empty list
    say(snapshot.table(snapshots.manifests(slices.project, args.name)))
    return OK


def cmd_snapshot_restore(args: argparse.Namespace) -> int:
    snapshots.restore(Slices(_project(args)), args.name, args.snap, args.force, say)
    return OK


def cmd_snapshot_delete(args: argparse.Namespace) -> int:
    snapshots.delete(Slices(_project(args)), args.name, args.snap, say)
    return OK


def _image_verb(run: Callable[[Registry, argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A verb on the backend's image registry; its storage's failures are the command's (exit 1)."""

    def verb(args: argparse.Namespace) -> int:
        try:
            return run(Registry(open_store()), args)
        except (SliceError, auto.CommandError):
            raise
        except Exception as exc:  # the backend's storage: a file system or an S3 endpoint
            raise SliceError(f"the image registry: {exc}") from None

    return verb


@_image_verb
def cmd_image_add(registry: Registry, args: argparse.Namespace) -> int:
    entry = images.add(registry, args.image, Path(args.file), args.description)
    say(f"image {entry.name}: {entry.format}, {images.size_text(entry.size)}, sha256 {entry.sha256}")
    return OK


@_image_verb
def cmd_image_list(registry: Registry, args: argparse.Namespace) -> int:
    entries = registry.entries()
    say(images.as_json(entries) if args.json else images.table(entries))
    return OK


@_image_verb
def cmd_image_rm(registry: Registry, args: argparse.Namespace) -> int:
    slices = Slices(_project(args))
    entry = images.remove(registry, args.image, images.stacks_of(slices.names, slices.outputs))
    say(f"image {entry.name} removed")
    return OK


def _pcap_file(path: Path) -> Any:
    """The output file, made for the caller alone (packets may carry what others must not read)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    return os.fdopen(fd, "wb")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cloudrepo", description="Slices of a Cloud Repositorio cloud, one Pulumi stack each."
    )
    p.add_argument("--project", help="the cloudrepo checkout (default: this directory if it has Pulumi.yaml)")
    sub = p.add_subparsers(dest="verb", required=True)

    def verb(
        parent: Any, name: str, func: Callable[[argparse.Namespace], int], help: str
    ) -> argparse.ArgumentParser:
        q: argparse.ArgumentParser = parent.add_parser(name, help=help)
        q.set_defaults(func=func)
        return q

    def group(name: str, help: str) -> Any:
        return sub.add_parser(name, help=help).add_subparsers(dest="action", required=True)

    create = verb(group("slice", "create a slice"), "create", cmd_slice_create, "a new slice (stack)")
    create.add_argument("name", type=stack_name)
    create.add_argument("--pool", type=int, help="first VLAN of the slice's pool of 20")
    create.add_argument(
        "--cloud", help="copy every cloudrepo: setting but the slice from this stack config file"
    )
    create.add_argument("--from", dest="from_file", help="take the slice section (only) from this YAML file")

    vm = group("vm", "add or remove a VM")
    q = verb(vm, "add", cmd_vm_add, "add a VM")
    q.add_argument("name", type=stack_name)
    q.add_argument("--id", type=int, required=True)
    q.add_argument("--worker", required=True)
    q.add_argument("--data-interfaces", type=int, default=0)
    q.add_argument("--internet", action="store_true")
    q = verb(vm, "rm", cmd_vm_rm, "remove a VM and its links")
    q.add_argument("name", type=stack_name)
    q.add_argument("id", type=int)

    link = group("link", "add or remove a link")
    q = verb(link, "add", cmd_link_add, "link two interfaces (VM.ethN)")
    q.add_argument("name", type=stack_name)
    q.add_argument("a")
    q.add_argument("b")
    q.add_argument("--vlan", type=int, help="pin the link to this VLAN of the pool")
    q = verb(link, "rm", cmd_link_rm, "remove a written link")
    q.add_argument("name", type=stack_name)
    q.add_argument("a")
    q.add_argument("b")

    q = verb(group("topology", "add a preset"), "add", cmd_topology_add, "ring, bus, star or mesh of VMs")
    q.add_argument("name", type=stack_name)
    q.add_argument("preset", choices=list(MIN_VMS))
    q.add_argument("ids", type=int, nargs="+")

    for name, func, help in (
        ("preview", _engine("preview"), "what deploy would change"),
        ("deploy", _engine("up"), "apply the slice to the hosts"),
        ("show", cmd_show, "the slice's interfaces and links"),
    ):
        verb(sub, name, func, help).add_argument("name", type=stack_name)
    verb(sub, "list", cmd_list, "every slice in the backend")
    q = verb(sub, "workers", cmd_workers, "each worker's CPUs, memory, disk, load and the slices' claims")
    q.add_argument(
        "names", nargs="*", type=stack_name, help="the slices whose workers (default: every stack file)"
    )
    q.add_argument("--json", action="store_true")
    q = verb(sub, "top", cmd_top, "each launched VM's CPU % and resident memory, refreshed in place")
    q.add_argument("name", type=stack_name)
    q.add_argument("--once", action="store_true", help="one sample, then exit")
    q.add_argument("--json", action="store_true", help="with --once: as JSON")
    q.add_argument("--interval", type=interval, default=1.0, help="seconds between refreshes (default 1)")
    q = verb(sub, "destroy", cmd_destroy, "remove the slice from the hosts")
    q.add_argument("name", type=stack_name)
    q.add_argument("--rm", action="store_true", help="also remove the stack and its config file")
    q.add_argument("--yes", action="store_true", help="do not ask")
    q = verb(sub, "console", cmd_console, "a launched VM's serial console, over SSH to its worker")
    q.add_argument("name", type=stack_name)
    q.add_argument("vm", type=int)
    q.add_argument("--log", action="store_true", help="print the recent console output; do not attach")
    q.add_argument(
        "--lines", type=log_lines, help=f"with --log: how many lines (default {console.DEFAULT_LINES})"
    )
    q = verb(
        sub, "check", cmd_check,
        "run the slice's declared checks (slice.checks) inside its guests: SSH for cloud-init guests, else "
        "the serial console; a table, exit 0 only when every check holds",
    )  # fmt: skip
    q.add_argument("name", type=stack_name)
    q.add_argument("--json", action="store_true", help="the results as JSON (for graders)")
    q.add_argument("-i", dest="identity", metavar="KEY", help="the key for SSH guests (as `exec -i`)")
    q.add_argument(
        "--wait", type=float, default=0.0, metavar="S",
        help="try failing checks again for up to S seconds (guests still booting; default 0)",
    )  # fmt: skip
    q = verb(sub, "diagram", cmd_diagram, "draw the deployed slice (SVG or PNG by suffix)")
    q.add_argument("name", type=stack_name)
    q.add_argument("-o", "--output", required=True)

    address = (
        "the address reachable through the network node (which holds .1 on VLAN 400 and every link "
        "subnet): the VM's VLAN 400 address, else its first link address"
    )
    q = verb(
        sub, "ssh", cmd_ssh,
        f"OpenSSH into a launched VM as its cloud-init user, the network node as ProxyJump, at {address}; "
        "the guest's host key is pinned from the outputs; exits with the command's status",
    )  # fmt: skip
    q.usage = "%(prog)s NAME VM [-i KEY] [-- CMD ...]"
    q.description = (
        f"OpenSSH into VM of slice NAME as its cloud-init user, through the network node (ProxyJump), at "
        f"{address}. Its host key is pinned in .cloudrepo/NAME/known_hosts, written from the outputs. "
        "Without CMD an interactive login. Exit status: the command's (255: ssh could not connect)."
    )
    q.add_argument("name", type=stack_name)
    q.add_argument("vm", type=int)
    q.add_argument("-i", dest="identity", metavar="KEY", help="this key only (default: your usual ones)")
    q.set_defaults(command=[])
    q = verb(
        sub, "exec", cmd_exec,
        f"run a command on launched VMs at once (as `ssh`, at {address}); a table of exit codes and output",
    )  # fmt: skip
    q.usage = "%(prog)s NAME [--vm ID ...] [-i KEY] [--json] [--timeout S] -- CMD ..."
    q.description = (
        f"Run CMD on the VMs of slice NAME (default: every one with cloud-init), {guestssh.EXEC_PARALLEL} at "
        f"a time, as `cloudrepo ssh` does, at {address}; prints each VM's exit code and output. Exit status "
        "0 only when every command exited 0."
    )
    q.add_argument("name", type=stack_name)
    q.add_argument("--vm", type=int, action="append", metavar="ID", help="this VM (repeat; default: all)")
    q.add_argument("-i", dest="identity", metavar="KEY", help="this key only (default: your usual ones)")
    q.add_argument("--json", action="store_true", help="the results as JSON (vm, exit, stdout, stderr)")
    q.add_argument("--timeout", type=float, default=300.0, help="seconds per VM (default 300)")
    q.set_defaults(command=[])
    q = verb(sub, "capture", cmd_capture, "stream a link's packets as pcap (tcpdump on its worker)")
    q.add_argument("name", type=stack_name)
    q.add_argument("link", help="VM.ethN--VM.ethN, one endpoint VM.ethN (its TAP), or the link's VLAN")
    q.add_argument("-w", dest="write", default="-", help="FILE.pcap, or - for stdout (the default)")
    q.add_argument("--count", type=capture.packet_count, help="stop after N packets")
    q.add_argument("--filter", type=capture.bpf_filter, help="a pcap filter expression (one argument)")

    img = group("image", "named images kept in the backend, shared by everyone who uses it")
    q = verb(img, "add", cmd_image_add, "keep FILE (a qcow2 or raw disk) as image NAME")
    q.add_argument("image", metavar="NAME", type=images.image_name)
    q.add_argument("file", metavar="FILE")
    q.add_argument("--description", type=images.description, default="")
    verb(img, "list", cmd_image_list, "the backend's images").add_argument("--json", action="store_true")
    q = verb(img, "rm", cmd_image_rm, "remove image NAME (refused while a deployed slice boots from it)")
    q.add_argument("image", metavar="NAME", type=images.image_name)

    snap = group("snapshot", "save, list, restore or delete a slice's snapshots (config and VM disks)")
    for name, func, help in (
        ("save", cmd_snapshot_save, "keep the slice's config and every launched VM's disk as SNAP"),
        ("restore", cmd_snapshot_restore, "bring the slice back to SNAP: config, disks, then one deploy"),
        ("delete", cmd_snapshot_delete, "remove SNAP (its disk copies on the workers too)"),
    ):
        q = verb(snap, name, func, help)
        q.add_argument("name", type=stack_name)
        q.add_argument("snap", type=snapshot.snap_name)
        if name == "restore":
            q.add_argument(
                "--force", action="store_true",
                help="stop running VMs (their disks' changes since the snapshot are lost)",
            )  # fmt: skip
    verb(snap, "list", cmd_snapshot_list, "the slice's snapshots").add_argument("name", type=stack_name)

    from cloudrepo.portal.commands import add_verbs  # the portal's verbs (their imports wait for their use)

    add_verbs(sub, verb, _portal_verb)
    return p


def _portal_verb(run: Callable[[argparse.Namespace, Path, Callable[[str], None]], int]) -> Callable[..., int]:
    return lambda args: run(args, _project(args), say)


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """The arguments; for `ssh` and `exec` the words after the first `--` are the command, whatever
    they look like (`-4`, another `--`)."""
    words = list(argv)
    p = parser()
    if "--" in words:
        cut = words.index("--")
        head = words[:cut]
        verb = next((w for i, w in enumerate(head) if not w.startswith("-") and _not_value(head, i)), None)
        if verb in COMMAND_VERBS:
            args = p.parse_args(head)
            args.command = words[cut + 1 :]
            return args
    return p.parse_args(words)


def _not_value(words: Sequence[str], i: int) -> bool:
    """False when `words[i]` is the value of the global `--project` option."""
    return not (i > 0 and words[i - 1] == "--project")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    try:
        apply_environment()
        return int(args.func(args))
    except edits.EditError as exc:
        fail(f"{exc}; nothing written")
        return FAILED
    except auto.CommandError as exc:  # an engine call outside the verbs' own handling
        fail(f"the engine failed:\n{command_failure(exc)}")
        return FAILED
    except (SliceError, ValueError, OSError) as exc:
        fail(str(exc))
        return FAILED
    except KeyboardInterrupt:
        return FAILED
