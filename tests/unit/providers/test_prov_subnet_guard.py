"""The guard `expect subnet free` (sh, no process per address) against `ipaddress` on generated addresses:
a fake `ip` prints them as `ip -o -4 addr show` does."""

from __future__ import annotations

import ipaddress
import os
import subprocess
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from providers import predict

addresses = st.lists(
    st.tuples(
        st.sampled_from(["gw_a", "gw_b", "dhcp_c", "skipme"]), st.ip_addresses(v=4), st.integers(0, 32)
    ),
    max_size=12,
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=80, deadline=None)
@given(addresses, st.ip_addresses(v=4), st.integers(8, 30))
def test_the_guard_refuses_exactly_an_overlapping_address(
    tmp_path: Path,
    found: list[tuple[str, ipaddress.IPv4Address, int]],
    net: ipaddress.IPv4Address,
    length: int,
) -> None:
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    lines = "".join(
        f"{i + 2}: {dev}    inet {a}/{p} scope global {dev}\\n" for i, (dev, a, p) in enumerate(found)
    )
    (fake / "ip").write_text(f"#!/bin/sh\nprintf '{lines}'\n")
    (fake / "ip").chmod(0o755)
    want = ipaddress.IPv4Network(f"{net}/{length}", strict=False)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}
    argv = ["sh", "-c", predict._SUBNET_FREE, "sh", str(want.network_address), str(length), "skipme"]
    status = subprocess.run(argv, env=env, capture_output=True, timeout=30).returncode
    clash = any(
        ipaddress.IPv4Network(f"{a}/{p}", strict=False).overlaps(want)
        for dev, a, p in found
        if dev != "skipme"
    )
    assert status == (1 if clash else 0)
