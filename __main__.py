"""cloudrepo: the tenant network plane of one slice (one stack per slice), built over SSH."""

import pulumi

from components.inputs import raw_stack_config
from components.memory import read_previous_outputs
from components.model import SliceConfig
from components.prepare import prepare
from components.slice import SliceComponent
from providers.kinds.worker_claim import read_claims

raw = raw_stack_config()


def claims(
    config: SliceConfig,
) -> tuple[dict[str, tuple[int, int]], dict[int, str], dict[str, tuple[int, int]]]:
    """What the workers say, for `worker: auto` (`components.prepare.WorkerClaims`)."""
    return read_claims(raw, config.slice_name, config.workers)


prepared = prepare(raw, pulumi.get_stack(), read_previous_outputs(), claims=claims)
stack = f"{pulumi.get_project()}/{pulumi.get_stack()}"
slice_ = SliceComponent(prepared.config.slice_name, prepared.plan, prepared.deployed, stack=stack)
for key, value in slice_.outputs.items():
    pulumi.export(key, value)
