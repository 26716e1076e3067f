"""A multi-host cloud on one machine: network namespaces, one OVS and one sshd per host.

Run as root: ``python -m lab up|down|status|scan|vm ...``.
"""
