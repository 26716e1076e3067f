"""cloudrepo: the tenant network plane of one slice (one stack per slice), built over SSH."""

import pulumi

from components.inputs import raw_stack_config
from components.memory import read_previous_outputs
from components.prepare import prepare
from components.slice import SliceComponent

prepared = prepare(raw_stack_config(), pulumi.get_stack(), read_previous_outputs())
stack = f"{pulumi.get_project()}/{pulumi.get_stack()}"
slice_ = SliceComponent(prepared.config.slice_name, prepared.plan, prepared.deployed, stack=stack)
for key, value in slice_.outputs.items():
    pulumi.export(key, value)
