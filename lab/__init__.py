"""A multi-host cloud on one machine: network namespaces, one OVS and one sshd per host.

Run as root: ``python -m lab up|down|status|scan|vm ...``.
"""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
"""The checkout the testbed belongs to (its default directory is `.lab` there)."""
