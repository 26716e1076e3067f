"""cloudrepo: the tenant network plane of one slice (one stack per slice), built over SSH."""

import pulumi

from components.allocation import allocate_vlans
from components.inputs import raw_stack_config
from components.launch import load
from components.memory import read_previous_outputs
from components.outputs import Deployed
from components.plan import build_plan
from components.slice import SliceComponent

config, launches = load(raw_stack_config(), pulumi.get_stack())
deployed = Deployed.from_outputs(read_previous_outputs())
plan = build_plan(config, allocate_vlans(config.links, config.pool, deployed.vlans))
stack = f"{pulumi.get_project()}/{pulumi.get_stack()}"
slice_ = SliceComponent(config.slice_name, plan, deployed, launches=launches, stack=stack)
for key, value in slice_.outputs.items():
    pulumi.export(key, value)
