"""What the provider-level tests share: a provider of one kind configured for the testbed, its outputs."""

from __future__ import annotations

from typing import Any

from pulumi.dynamic import ConfigureRequest
from pulumi.dynamic.config import Config

from providers.pipeline import HostProvider
from tests.labfixtures import Testbed


def provider(testbed: Testbed, kind: str) -> HostProvider:
    """The one host provider for `kind`, configured as the engine configures it for the testbed."""
    p = HostProvider(kind)
    p.configure(ConfigureRequest(Config(testbed.ssh_config(), "cloudrepo")))
    return p


def outs(result: Any) -> dict[str, Any]:
    """A provider result's outputs (always set by these providers)."""
    assert result.outs is not None
    return dict(result.outs)


def until_gone(pid: int | str) -> str:
    """sh that waits (up to 30 s) until process `pid` has ended (a signal is handled in its own time)."""
    return f"i=0; while kill -0 {pid} 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done"
