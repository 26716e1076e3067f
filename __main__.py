"""cloudrepo: the tenant network plane of one slice (one stack per slice), built over SSH."""

import pulumi

from components.allocation import allocate_vlans
from components.config import raw_stack_config
from components.launch import load
from components.memory import Memory, read_previous_outputs
from components.plan import build_plan
from components.slice import SliceComponent

config, launches = load(raw_stack_config(), pulumi.get_stack())
memory = Memory(read_previous_outputs())
vlans = allocate_vlans(config.links, config.pool, memory.vlans)
plan = build_plan(config, vlans, memory.internet_ips)
slice_ = SliceComponent(config.slice_name, plan, memory.interface_vlans, launches=launches)
for key, value in slice_.outputs.items():
    pulumi.export(key, value)
