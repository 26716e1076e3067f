"""The portal's slice operations, on the command line's own code: the stack files (`stackfile`), the edits
(`edits`), the checks `pulumi preview` runs (`stackfile.check` = `components.prepare`) and the engine
(`engine.Slices`). A slice is its stack and its stack file, as for `cloudrepo`; the portal adds only who
owns it (`db.SliceOwner`).

Every change is checked whole before anything is written: the caller's rights, the names and VM ids other
slices hold, the pool (given by the portal; pinned only by an admin), the boot files (an operator's preset
or a registry image for a non-admin), the slice rules, then the owner's quota.
"""

from __future__ import annotations

import copy
import os
import secrets
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pulumi import automation as auto
from sqlalchemy import delete, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from cloudrepo import edits, stackfile
from cloudrepo.cli import STACK_NAME
from cloudrepo.engine import SliceError, Slices
from cloudrepo.portal import accounts, audit, pools, quotas
from cloudrepo.portal.db import JobLine, JobRow, SliceOwner, User, now
from components.model import POOL_SIZE
from vocabulary.errors import ConfigError
from vocabulary.shown import shown

SECTION_KEYS = ("vlanPool", "vms", "links", "topology", "checks", "cloudInit", "name")
USER_BOOT_KEYS = {"image", "memoryMb", "cpus", "append", "cloudInit"}
"""What a non-admin may put in a VM's `launch` object (no kernel or initrd paths; `image` a registry name)."""


class Refused(Exception):
    """An operation refused; `status` is the HTTP status, `problems` every reason."""

    def __init__(self, status: int, problems: list[str] | str) -> None:
        self.status = status
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


@dataclass
class Cloud:
    """The operator's side: every `cloudrepo:` setting but the slice (plain, and secrets decrypted), and
    the boot presets users pick from (name -> a VM's `launch`)."""

    plain: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    launches: dict[str, dict[str, Any]] = field(default_factory=dict)

    def checked_config(self, section: Mapping[str, Any]) -> dict[str, Any]:
        placeholders = {k: {"secure": "?"} for k in self.secrets}
        return {**self.plain, **placeholders, stackfile.SLICE_KEY: dict(section)}


@dataclass(frozen=True)
class Holding:
    """What a slice of the project holds on the hosts' global names."""

    name: str
    pool: int | None
    vm_ids: frozenset[int]


def section_pool(section: Mapping[str, Any]) -> int | None:
    pool = section.get("vlanPool")
    start = pool.get("start") if isinstance(pool, dict) else pool
    return start if isinstance(start, int) and not isinstance(start, bool) else None


def section_ids(section: Mapping[str, Any]) -> set[int]:
    vms = section.get("vms")
    if not isinstance(vms, list):
        return set()
    return {v["id"] for v in vms if isinstance(v, dict) and isinstance(v.get("id"), int)}


def next_free_id(held: set[int], start: int = 1) -> int:
    n = start
    while n in held:
        n += 1
    return n


def _launches_by_id(section: Mapping[str, Any] | None) -> dict[Any, Any]:
    vms = (section or {}).get("vms")
    return {v.get("id"): v.get("launch") for v in vms if isinstance(v, dict)} if isinstance(vms, list) else {}


def boot_problems(
    section: Mapping[str, Any], launches: Mapping[str, Any], current: Mapping[str, Any] | None = None
) -> list[str]:
    """A non-admin's new or changed `launch`es: a preset name (or a preset's object, as it is written), or
    an object without boot paths (`USER_BOOT_KEYS`) whose `image` is a registry name. A VM's launch as the
    `current` section has it (an admin's, say) is not judged again."""
    problems: list[str] = []
    before = _launches_by_id(current)
    vms = section.get("vms")
    for i, vm in enumerate(vms if isinstance(vms, list) else []):
        launch = vm.get("launch") if isinstance(vm, dict) else None
        where = f"vms[{i}].launch"
        if launch is None or launch in launches.values():
            continue
        if isinstance(vm, dict) and vm.get("id") in before and before[vm.get("id")] == launch:
            continue
        if isinstance(launch, str):
            if launch not in launches:
                offered = ", ".join(sorted(launches)) or "none"
                problems.append(f"{where}: no boot preset {shown(launch)} (offered: {offered})")
            continue
        if not isinstance(launch, dict):
            problems.append(f"{where}: a boot preset name or an object, got {shown(launch)}")
            continue
        extra = sorted(set(map(str, launch)) - USER_BOOT_KEYS)
        if extra:
            problems.append(
                f"{where}: {', '.join(extra)} not allowed: boot files come from the operator's presets "
                f"({', '.join(sorted(launches)) or 'none'}) or registry images"
            )
        image = launch.get("image")
        if isinstance(image, str) and "/" in image:
            problems.append(f"{where}.image: a registry image name, not a path, got {shown(image)}")
    return problems


def with_presets(section: Mapping[str, Any], launches: Mapping[str, Any]) -> dict[str, Any]:
    """The section with each preset name in a `launch` replaced by the preset's object."""
    out = copy.deepcopy(dict(section))
    for vm in out.get("vms") or []:
        if isinstance(vm, dict) and isinstance(vm.get("launch"), str) and vm["launch"] in launches:
            vm["launch"] = copy.deepcopy(launches[vm["launch"]])
    return out


ORPHANED = "the server process that ran this job stopped before it ended"


PROCESS = secrets.token_hex(4)
"""Tells this process from an earlier one that had its pid."""


def this_runner() -> str:
    """This server process, as a job's `runner`: `HOST:PID:PROCESS`."""
    return f"{socket.gethostname()}:{os.getpid()}:{PROCESS}"


def runner_gone(runner: str) -> bool:
    """Whether the server process `HOST:PID:PROCESS` that runs a job is gone: a process of this host that
    no longer exists, or an earlier one that had this process's pid (one of another host: not known)."""
    host, _, rest = runner.partition(":")
    pid, _, process = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return process != PROCESS
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def section_from_yaml(text: str, user: User) -> dict[str, Any]:
    """The slice section of an imported YAML text, read by `stackfile.slice_from_yaml` as `slice create
    --from` reads a file; without `vlanPool` for a non-admin. `Refused` (422) when it holds no slice."""
    if len(text.encode()) > stackfile.MAX_FILE:
        raise Refused(422, f"yaml: over {stackfile.MAX_FILE} bytes, not a slice")
    with tempfile.TemporaryDirectory(prefix="cloudrepo-import-") as tmp:
        path = Path(tmp) / "slice.yaml"
        path.write_text(text)
        try:
            section, _left = stackfile.slice_from_yaml(path)
        except ValueError as exc:
            raise Refused(422, str(exc).replace(str(path), "yaml")) from None
    if user.role != "admin":
        section.pop("vlanPool", None)
    return section


@dataclass
class Job:
    """A deploy (or preview) running in a thread; its engine lines kept for the streams, and handed to
    `saved` (the database's copy: `Portal.new_job`) as they come."""

    id: int
    slice: str
    verb: str
    lines: list[str] = field(default_factory=list)
    done: bool = False
    ok: bool = False
    changed: threading.Condition = field(default_factory=threading.Condition)
    saved: Callable[[int, list[str], bool | None], None] | None = None
    """Called with the new lines (and the result, once done)."""

    def add(self, line: str) -> None:
        new = line.rstrip("\n").split("\n")
        with self.changed:
            self.lines.extend(new)
            self.changed.notify_all()
        if self.saved is not None:
            self.saved(self.id, new, None)

    def finish(self, ok: bool) -> None:
        with self.changed:
            self.done, self.ok = True, ok
            self.changed.notify_all()
        if self.saved is not None:
            self.saved(self.id, [], ok)


class Portal:
    """The slices of one project (checkout) and backend, as the portal's users see them."""

    def __init__(self, project: Path, cloud: Cloud, db: sessionmaker) -> None:
        self.project = project
        self.cloud = cloud
        self.db = db
        self.slices = Slices(project)
        self.jobs: dict[int, Job] = {}
        self._jobs_lock = threading.Lock()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.db() as s, s.begin():
            yield s

    # ---- what the project holds -------------------------------------------------------------------

    def stack_names(self) -> list[str]:
        return sorted(f.name[len("Pulumi.") : -len(".yaml")] for f in self.project.glob("Pulumi.*.yaml"))

    def section(self, name: str) -> dict[str, Any]:
        config = stackfile.config_of(stackfile.read(stackfile.stack_file(self.project, name)))
        section = config.get(stackfile.SLICE_KEY) or {}
        return dict(section) if isinstance(section, dict) else {}

    def holdings(self, but: str | None = None) -> list[Holding]:
        out = []
        for name in self.stack_names():
            if name == but:
                continue
            try:
                section = self.section(name)
            except ValueError:
                continue
            out.append(Holding(name, section_pool(section), frozenset(section_ids(section))))
        return out

    def registry(self) -> Any:
        """The backend's image registry (`components.image_store.Registry`), as `cloudrepo image` opens it."""
        from components.image_store import Registry, open_store

        return Registry(open_store())

    def images(self) -> list[Any]:
        """The backend's named images (`cloudrepo image add`), which users may boot by name; none when the
        registry cannot be read."""
        try:
            return list(self.registry().entries())
        except Exception:  # the registry's storage (a file system or an S3 endpoint): offered as none
            return []

    def taken_vlans(self, but: str | None = None) -> set[int]:
        return {v for h in self.holdings(but) if h.pool is not None for v in pools.pool_vlans(h.pool)}

    # ---- rights ------------------------------------------------------------------------------------

    def owner(self, db: Session, name: str) -> User | None:
        return accounts.owner_of(db, name)

    def allowed(self, db: Session, user: User, name: str) -> User:
        """The owner of slice `name` when `user` may act on it; 404 when the portal has no such slice
        (for a non-admin also a slice the portal does not own), 403 when it is another's."""
        owner = self.owner(db, name)
        if owner is None:
            if user.role == "admin" and stackfile.stack_file(self.project, name).exists():
                return user
            raise Refused(404, f"no slice {name!r}")
        if not accounts.may_see(db, user, owner.id):
            raise Refused(403, f"slice {name!r} is not yours")
        return owner

    def visible(self, db: Session, user: User) -> list[tuple[str, User]]:
        rows = db.execute(select(SliceOwner, User).join(User, User.id == SliceOwner.owner_id)).all()
        return sorted(
            ((so.name, owner) for so, owner in rows if accounts.may_see(db, user, owner.id)),
            key=lambda r: r[0],
        )

    # ---- checks ------------------------------------------------------------------------------------

    def _name_problems(self, db: Session, user: User, name: Any) -> list[str]:
        if not isinstance(name, str) or not STACK_NAME.fullmatch(name):
            return [
                f"name: {shown(name)} is not a slice name: 1..100 letters, digits, '_', '.' and '-', "
                "starting with a letter or digit"
            ]
        taken = stackfile.stack_file(self.project, name).exists() or self.slices.exists(name)
        if not taken:
            return []
        owner = self.owner(db, name)
        whose = f" (owned by {owner.name})" if owner is not None and user.role == "admin" else ""
        return [f"name: slice {name!r} exists already{whose}"]

    def _id_problems(self, db: Session, user: User, name: str, section: Mapping[str, Any]) -> list[str]:
        holdings = self.holdings(but=name)
        held = {vm: h.name for h in holdings for vm in h.vm_ids}
        mine = section_ids(section)
        problems = []
        vms = section.get("vms")
        for i, vm in enumerate(vms if isinstance(vms, list) else []):
            vm_id = vm.get("id") if isinstance(vm, dict) else None
            if isinstance(vm_id, int) and vm_id in held:
                other = held[vm_id]
                owner = self.owner(db, other)
                whose = (
                    f"slice {other!r}" + (f" of {owner.name}" if owner is not None else "")
                    if user.role == "admin"
                    else "another slice"
                )
                free = next_free_id(set(held) | mine)
                problems.append(f"vms[{i}].id: VM {vm_id} is held by {whose}; the next free id is {free}")
        return problems

    def config_for(self, name: str, section: Mapping[str, Any]) -> dict[str, Any]:
        """The config a slice's section is checked in: its stack file's (the operator's settings it was
        made with, secrets as they are stored), else, for a new slice, the portal's cloud."""
        path = stackfile.stack_file(self.project, name)
        if not path.exists():
            return self.cloud.checked_config(section)
        return {**stackfile.config_of(stackfile.read(path)), stackfile.SLICE_KEY: dict(section)}

    def _checked(self, name: str, section: Mapping[str, Any], outputs: Mapping[str, Any]) -> Any:
        try:
            return stackfile.check(self.config_for(name, section), name, outputs, self.project)
        except ConfigError as exc:
            raise Refused(422, exc.problems) from None

    def _usage_of_others(self, db: Session, owner: User, but: str) -> quotas.Usage:
        parts = []
        for so in db.scalars(select(SliceOwner).where(SliceOwner.owner_id == owner.id)):
            if so.name == but or not stackfile.stack_file(self.project, so.name).exists():
                continue
            try:
                prepared = stackfile.check(
                    self.config_for(so.name, self.section(so.name)), so.name, {}, self.project
                )
            except (ConfigError, ValueError):
                continue
            parts.append(quotas.usage(prepared.config))
        return quotas.total(parts)

    def _quota(self, db: Session, owner: User, name: str, prepared: Any) -> None:
        wanted = self._usage_of_others(db, owner, name) + quotas.usage(prepared.config)
        problems = quotas.overruns(owner.name, accounts.limits_of(db, owner), wanted)
        if problems:
            raise Refused(422, problems)

    def _checked_section(
        self,
        db: Session,
        user: User,
        owner: User,
        name: str,
        section: dict[str, Any],
        outputs: Mapping[str, Any],
        current: Mapping[str, Any],
        found: Sequence[str] = (),
    ) -> dict[str, Any]:
        """The section as it will be written (presets expanded), every rule checked; `Refused` else, with
        every problem (`found` ones, the held ids, the boot files, the pool, the slice rules) at once."""
        problems = [*found, *self._id_problems(db, user, name, section)]
        if user.role != "admin":
            problems += boot_problems(section, self.cloud.launches, current)
            if section.get("vlanPool") != current.get("vlanPool"):
                problems.append("vlanPool: only an admin pins a slice's VLAN pool")
        expanded = with_presets(section, self.cloud.launches)
        prepared = None
        try:
            prepared = self._checked(name, expanded, outputs)
        except Refused as exc:
            problems += exc.problems
        if problems or prepared is None:
            raise Refused(422, problems)
        self._quota(db, owner, name, prepared)
        return expanded

    # ---- operations --------------------------------------------------------------------------------

    def create(self, user: User, body: Any) -> str:
        """A new slice owned by `user` from a slice section (with its `name`); its name. Every problem of
        the request is collected (name, keys, pool, VM ids, boot files, slice rules) and told at once."""
        if not isinstance(body, dict):
            raise Refused(422, f"the body must be a slice section (an object), got {shown(body)}")
        with self.session() as db:
            name = body.get("name")
            problems = self._name_problems(db, user, name)
            unknown = sorted(str(k) for k in body if k not in SECTION_KEYS)
            problems += [f"{k}: not a key of a slice section" for k in unknown]
            pinned = "vlanPool" in body and user.role == "admin"
            if "vlanPool" in body and not pinned:
                problems.append("vlanPool: only an admin pins a slice's VLAN pool; the portal allocates it")
            stack = name if isinstance(name, str) and STACK_NAME.fullmatch(name) else "new-slice"
            section = {k: v for k, v in body.items() if k in SECTION_KEYS and k not in ("name", "vlanPool")}
            taken = self.taken_vlans(but=stack)
            start = section_pool(body) if pinned else pools.free_pool(taken)
            if pinned and start is not None and pools.clashes(start, taken):
                problems.append(
                    f"vlanPool.start: the pool {start}..{start + POOL_SIZE - 1} meets another "
                    "slice's VLANs or subnets"
                )
            if start is None and not pinned:
                problems.append("vlanPool: no free VLAN pool is left on this cloud")
            section = (
                edits.new_slice(start, section)
                if start is not None
                else {**section, "vlanPool": body.get("vlanPool")}
            )
            problems += self._id_problems(db, user, stack, section)
            if user.role != "admin":
                problems += boot_problems(section, self.cloud.launches)
            written = with_presets(section, self.cloud.launches)
            prepared = None
            try:
                prepared = self._checked(stack, written, {})
            except Refused as exc:
                problems += exc.problems
            if problems or prepared is None:
                raise Refused(422, problems)
            self._quota(db, user, stack, prepared)
            self.slices.create(stack)
            path = stackfile.stack_file(self.project, stack)
            doc = stackfile.read(path)
            stackfile.write(path, {**doc, "config": {**self.cloud.plain, stackfile.SLICE_KEY: written}})
            for key, value in self.cloud.secrets.items():
                self.slices.set_secret(stack, key, value)
            db.add(SliceOwner(name=stack, owner_id=user.id))
            audit.record(db, user.name, "create", stack, "ok", f"VLAN pool {start}")
            return stack

    def import_yaml(self, user: User, name: str, text: str) -> str:
        """A new slice from YAML (a stack config file, `{cloudrepo:slice: ...}` or the section itself, as
        `slice create --from` takes it); a non-admin's file keeps no `vlanPool` (the portal gives one)."""
        return self.create(user, {**section_from_yaml(text, user), "name": name})

    def replace_yaml(self, user: User, name: str, text: str) -> None:
        """Import YAML (as `import_yaml` reads it) into the existing slice `name`: its section replaced,
        checked as every edit is; a non-admin's file keeps no `vlanPool` (the slice's stays)."""
        with self.session() as db:
            self.allowed(db, user, name)  # another's slice is refused before its YAML is read
        self.replace(user, name, section_from_yaml(text, user))

    def edit(
        self,
        user: User,
        name: str,
        change: Callable[[dict[str, Any]], dict[str, Any]],
        what: str,
        found: Sequence[str] = (),
    ) -> None:
        """Apply an edit (`edits`) to the slice, checked whole before the stack file is written; `found`:
        problems of the request already known, told with the others."""
        with self.session() as db:
            owner = self.allowed(db, user, name)
            path = stackfile.stack_file(self.project, name)
            doc = stackfile.read(path)
            config = stackfile.config_of(doc)
            current = self.section(name)
            try:
                section = change(dict(current))
            except edits.EditError as exc:
                raise Refused(422, str(exc)) from None
            outputs = self.slices.outputs(name)
            written = self._checked_section(db, user, owner, name, section, outputs, current, found)
            config[stackfile.SLICE_KEY] = written
            stackfile.write(path, {**doc, "config": config})
            audit.record(db, user.name, "edit", name, "ok", what)

    def replace(self, user: User, name: str, body: Any) -> None:
        """Import: the slice's section replaced by `body` (its pool kept unless an admin gives one)."""
        if not isinstance(body, dict):
            raise Refused(422, f"the slice section must be an object, got {shown(body)}")
        unknown = [
            f"{k}: not a key of a slice section" for k in sorted(map(str, body)) if k not in SECTION_KEYS
        ]
        body = {k: v for k, v in body.items() if k in SECTION_KEYS and k != "name"}

        def change(current: dict[str, Any]) -> dict[str, Any]:
            return {**body, "vlanPool": body.get("vlanPool", current.get("vlanPool"))}

        self.edit(user, name, change, "import", unknown)

    def describe(self, user: User, name: str) -> dict[str, Any]:
        with self.session() as db:
            owner = self.allowed(db, user, name)
        outputs: dict[str, Any] = {}
        update = None
        try:  # two engine calls: a stack not in the backend (a file of the checkout alone) has neither
            outputs = self.slices.outputs(name)
            update = self.slices.last_update(name)
        except (SliceError, auto.CommandError):  # a deploy still writing the checkpoint: shown as it is read
            pass
        return {
            "name": name,
            "owner": owner.name,
            "config": self.section(name),
            "outputs": outputs,
            "lastUpdate": None
            if update is None
            else {
                "kind": update.kind,
                "result": update.result,
                "end": update.end.isoformat() if update.end else None,
            },
        }

    def remove(self, user: User, name: str, out: Callable[[str], None]) -> None:
        """Destroy the slice on the hosts, then remove its stack, its stack file and its owner."""
        with self.session() as db:
            self.allowed(db, user, name)
        ok = False
        try:
            if self.slices.exists(name):
                self.slices.run("destroy", name, out)
                self.slices.remove(name)
            stackfile.stack_file(self.project, name).unlink(missing_ok=True)
            ok = True
        finally:
            with self.session() as db:
                if ok:
                    row = db.get(SliceOwner, name)
                    if row is not None:
                        db.delete(row)
                    db.execute(delete(JobRow).where(JobRow.slice == name))
                audit.record(db, user.name, "destroy", name, "ok" if ok else "failed")

    # ---- engine runs -------------------------------------------------------------------------------

    def start(self, user: User, name: str, verb: str) -> Job:
        """Run `preview` or `up` on the slice in a thread; the job streams the engine's lines. A deploy
        is checked first as an edit is (the slice rules, then the owner's quota as it is now)."""
        with self.session() as db:
            owner = self.allowed(db, user, name)
            if verb == "up":
                prepared = self._checked(name, self.section(name), self.slices.outputs(name))
                self._quota(db, owner, name, prepared)
        job = self.new_job(name, verb, user.name)
        threading.Thread(target=self._run, args=(job, user.name), daemon=True, name=f"{verb}-{name}").start()
        return job

    def new_job(self, name: str, verb: str, actor: str) -> Job:
        """A job of this process (followed in memory), kept in the database as it goes."""
        with self.session() as db:
            row = JobRow(slice=name, verb=verb, actor=actor, runner=this_runner(), done=False, ok=False)
            db.add(row)
            db.flush()
            job = Job(id=row.id, slice=name, verb=verb, saved=self._save_job)
        with self._jobs_lock:
            self.jobs[job.id] = job
        return job

    def _save_job(self, job_id: int, lines: list[str], ok: bool | None) -> None:
        try:
            with self.session() as db:
                db.add_all(JobLine(job_id=job_id, line=line) for line in lines)
                row = db.get(JobRow, job_id)
                if ok is not None and row is not None:
                    row.done, row.ok, row.ended = True, ok, now()
        except SQLAlchemyError:  # the stream in memory goes on; only a reload or another process misses it
            pass

    def stored_job(self, job_id: int) -> Job | None:
        """A job as the database has it (run by this process or another), or None. A job whose server
        process is gone (on this host) is ended there, failed, saying so."""
        with self.session() as db:
            row = db.get(JobRow, job_id)
            if row is None:
                return None
            if not row.done and runner_gone(row.runner):
                db.add(JobLine(job_id=row.id, line=ORPHANED))
                row.done, row.ok, row.ended = True, False, now()
                db.flush()
            q = select(JobLine.line).where(JobLine.job_id == job_id).order_by(JobLine.id)
            return Job(
                id=row.id, slice=row.slice, verb=row.verb, lines=list(db.scalars(q)), done=row.done, ok=row.ok
            )

    def current(self, job: Job) -> Job:
        """The job as it is now: this process's own in memory, another's read again from the database."""
        if self.jobs.get(job.id) is job:
            return job
        return self.stored_job(job.id) or job

    def latest_job(self, user: User, name: str) -> Job | None:
        """The slice's job for its page: a running one, else the one that ended last (a deploy refused
        by the lock while another ran ends before that one)."""
        with self.session() as db:
            q = (
                select(JobRow.id)
                .where(JobRow.slice == name)
                .order_by(JobRow.done, JobRow.ended.desc(), JobRow.id.desc())
            )
            found = db.scalar(q.limit(1))
        return None if found is None else self.job(user, found)

    def _run(self, job: Job, actor: str) -> None:
        ok = False
        try:
            self.slices.run(job.verb, job.slice, job.add)
            ok = True
        except SliceError as exc:
            job.add(str(exc))
        except Exception as exc:  # the engine's own failure: told on the stream, kept in the audit
            job.add(f"{job.verb} of slice {job.slice!r} failed: {exc}")
        finally:
            job.finish(ok)
            with self.session() as db:
                audit.record(
                    db,
                    actor,
                    "deploy" if job.verb == "up" else job.verb,
                    job.slice,
                    "ok" if ok else "failed",
                    "\n".join(job.lines[-10:]),
                )

    def job(self, user: User, job_id: int) -> Job:
        job = self.jobs.get(job_id) or self.stored_job(job_id)
        if job is None:
            raise Refused(404, f"no job {job_id}")
        with self.session() as db:
            self.allowed(db, user, job.slice)
        return job


def vm_choices(section: Mapping[str, Any], held: set[int]) -> int:
    """The id the form offers for a new VM: the next free one past the slice's own and the held ones."""
    return next_free_id(held | section_ids(section))
