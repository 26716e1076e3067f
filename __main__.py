"""cloudrepo: the tenant network plane of one slice (one stack per slice), built over SSH."""

from collections.abc import Callable

import pulumi

from components.inputs import raw_stack_config
from components.memory import read_previous_outputs
from components.model import SliceConfig
from components.prepare import ClaimsRead, Reserve, Shares, prepare
from components.slice import SliceComponent
from providers.kinds.worker_claim import read_claims
from providers.reservation import reserve

raw = raw_stack_config()
stack = f"{pulumi.get_project()}/{pulumi.get_stack()}"


def claims(config: SliceConfig) -> ClaimsRead:
    """What the workers say, for `worker: auto` at preview (`components.prepare.WorkerClaims`)."""
    return read_claims(raw, config.slice_name, config.workers)


def reserved(config: SliceConfig, choose: Callable[[ClaimsRead], tuple[SliceConfig, Shares]]) -> SliceConfig:
    """At `up`: the choice taken and reserved under the workers' locks (`components.prepare.Reserve`)."""
    return reserve(raw, config.slice_name, stack, config.workers, choose)


at_up: Reserve | None = None if pulumi.runtime.is_dry_run() else reserved
prepared = prepare(raw, pulumi.get_stack(), read_previous_outputs(), claims=claims, reserve=at_up)
slice_ = SliceComponent(prepared.config.slice_name, prepared.plan, prepared.deployed, stack=stack)
for key, value in slice_.outputs.items():
    pulumi.export(key, value)
