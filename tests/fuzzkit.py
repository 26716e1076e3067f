"""Hostile input for the fuzz tests: values of every JSON type and strings no field expects, and the size
of a run (`HYPOTHESIS_PROFILE=long` for the long one; the default is sized for `make test`)."""

from __future__ import annotations

import copy
import os
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

LONG = os.environ.get("HYPOTHESIS_PROFILE") == "long"

PEM = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "QyNTUxOQAAACBfuzzyFakeFakeFakeFakeFakeFakeFakeFakeFakeFakeFakeAAAAA=\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)
"""Key text as an operator would paste it (not a usable key)."""
KEY_LINES = [line for line in PEM.splitlines() if "-----" not in line]

HOSTILE_TEXT = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "a\nb",
    "\r\n",
    "\t",
    "é",
    "ﬀ",
    "\u202eevil",
    "😀" * 3,
    "Ω" * 300,
    "A" * 300,
    "9" * 5000,
    "x" * 70_000,
    "../../../../etc/passwd",
    "/proc/self/environ",
    "/dev/zero",
    "~root/.ssh/id_rsa",
    "~",
    ".",
    "..",
    "$(reboot)",
    "`id`",
    "; rm -rf / #",
    "-oProxyCommand=id",
    "--help",
    "%s%n",
    "{}",
    "[]",
    "null",
    "{not json",
    "NaN",
    "1e999",
    "-1",
    "0",
    "1002",
    "1002.eth1",
    "1003.eth9",
    "worker1",
    "tcg",
    "ring",
    PEM,
    PEM.strip().replace("\n", " "),
]
"""Strings no field expects (and a few every field of some kind does, to reach the checks behind)."""

HOSTILE_NUMBERS = [0, -1, 1, 2, 19, 400, 4094, 4095, 65536, 2**31, 2**63, 10**30, 1.5, -0.0, 1e300]


def hostile_values(depth: int = 2) -> st.SearchStrategy[Any]:
    """Any JSON value, with the hostile strings and numbers above weighted in (no NaN or infinity: the
    engine's JSON has none; as text they are among `HOSTILE_TEXT`)."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.sampled_from(HOSTILE_NUMBERS),
        st.integers(min_value=-(2**40), max_value=2**40),
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from(HOSTILE_TEXT),
        st.text(max_size=40),
    )
    if depth == 0:
        return scalars
    inner = hostile_values(depth - 1)
    return st.one_of(
        scalars,
        scalars,
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(HOSTILE_TEXT), st.text(max_size=10)), inner, max_size=3),
    )


def hostile_text() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(HOSTILE_TEXT), st.text(max_size=60))


def fuzz_settings(ci: int, long: int) -> settings:
    """`ci` examples by default, `long` with HYPOTHESIS_PROFILE=long; no deadline (a shared CI machine)."""
    return settings(
        max_examples=long if LONG else ci,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def leaks_key(text: str) -> list[str]:
    """The lines of `PEM` (or its armour) that `text` carries."""
    found = [line for line in KEY_LINES if line[:24] in text]
    return found + (["PRIVATE KEY"] if "PRIVATE KEY" in text else [])


Path_ = tuple[str | int, ...]
"""A place in a config tree: object keys and list indexes from the top."""


def places(node: Any, at: Path_ = ()) -> list[Path_]:
    """Every place in the tree under `node`, parents before children."""
    out = [at] if at else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += places(value, (*at, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += places(value, (*at, i))
    return out


def node_at(tree: Any, at: Path_) -> Any:
    node = tree
    for part in at:
        node = node[part]
    return node


def replaced(tree: Any, at: Path_, value: Any) -> Any:
    """A deep copy of `tree` with the node at `at` replaced by `value` (deleted when `value` is DELETE)."""
    out = copy.deepcopy(tree)
    parent = node_at(out, at[:-1])
    if value is DELETE:
        del parent[at[-1]]
    else:
        parent[at[-1]] = value
    return out


DELETE = object()
