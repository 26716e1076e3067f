"""The stack-config model, link graph, VLAN allocation, MACs, `SliceComponent` and the stack outputs."""
