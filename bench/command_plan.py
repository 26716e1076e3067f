"""(c)'s resources, pure: the seed's objects (`bench.baselines.seed_objects`) as pulumi-command resources.

One `remote.Command` per seed create command, as a user of pulumi-command would write the seed: its `delete`
is the seed's teardown command that undoes it (`Step.undo`: `ip tuntap add` <-> `ip link delete`, `add-port`
<-> `del-port`, `ip netns add` <-> `ip netns delete`, dnsmasq <-> `kill` by pid file, `iptables -A` <-> `-D`,
ip_forward <-> its old value, the run directory <-> `rm -rf`); commands that only configure what another
command made (`ip link set up`, `ip addr add`, the move into the namespace) have none, as their effect goes
with the object. One Command per command, rather than one per object with all of its teardown on the last,
keeps the seed's granularity (20 links = 374 Commands, the figure of the original report) and runs each
teardown command in a session of its own, as (b) does.

Order: the commands of one object form a chain (`depends_on` the previous one), so `pulumi up` runs them in
the seed's order and `pulumi destroy` runs their deletes in reverse (TAP: `del-port`, then `ip link delete`);
an object's first command depends on the last command of every object it `needs`; objects are otherwise
independent and run in parallel.
"""

from __future__ import annotations

import graphlib
from dataclasses import dataclass

from bench.baselines import SeedObject


@dataclass(frozen=True)
class CommandSpec:
    """One `remote.Command`: its resource name, host, create and delete commands, and what it waits for."""

    name: str
    host: str
    create: str
    delete: str | None
    depends_on: tuple[str, ...]


def step_name(obj: SeedObject, index: int) -> str:
    return f"{obj.name}-{index + 1}"


def command_plan(objects: list[SeedObject]) -> list[CommandSpec]:
    """The Commands of the objects, each after those it depends on (so they can be made in this order)."""
    by_name = {obj.name: obj for obj in objects}
    if len(by_name) != len(objects):
        raise ValueError("two seed objects share a name")
    last = {obj.name: step_name(obj, len(obj.steps) - 1) for obj in objects}
    order = graphlib.TopologicalSorter({obj.name: obj.needs for obj in objects}).static_order()
    out: list[CommandSpec] = []
    for obj in (by_name[n] for n in order):
        for i, step in enumerate(obj.steps):
            deps = (step_name(obj, i - 1),) if i else tuple(last[n] for n in obj.needs)
            out.append(CommandSpec(step_name(obj, i), obj.host, step.create, step.undo, deps))
    return out
