"""Experiment only (`bench/profile.py`, knob `workers=N`): the Python dynamic provider with N gRPC workers.

`python -m pulumi.dynamic` serves the engine with `grpc.server(futures.ThreadPoolExecutor(max_workers=4))`,
4 being hard-coded in the SDK (`pulumi/dynamic/__main__.py`, whose `main()` runs on import).  This file is
started instead of it by a `pulumi-resource-pulumi-python` shim that `bench/profile.py` writes and names in
the project's `Pulumi.yaml` (`plugins: providers: [{name: pulumi-python, path: DIR}]`: a per-project plugin
override the engine prefers to the toolchain's shim, with no warning).  It swaps the executor for one of
$CLOUDREPO_PROVIDER_WORKERS threads, then runs the SDK's module unchanged.
"""

from __future__ import annotations

import os
import runpy
import sys
from concurrent import futures
from typing import Any

import grpc

WORKERS_ENV = "CLOUDREPO_PROVIDER_WORKERS"


def workers() -> int:
    raw = os.environ.get(WORKERS_ENV, "")
    return int(raw) if raw.isdigit() and 1 <= int(raw) <= 256 else 4


def main() -> None:
    n = workers()
    real_server = grpc.server

    def server(executor: futures.Executor | None = None, *args: Any, **kwargs: Any) -> grpc.Server:
        if executor is not None:
            executor.shutdown(wait=False)  # the SDK's (no thread started yet)
        return real_server(futures.ThreadPoolExecutor(max_workers=n), *args, **kwargs)

    grpc.server = server
    # as `python -m` does: the project directory (the provider's working directory) first on sys.path, so
    # the pickled providers find their modules
    sys.path[0] = os.getcwd()
    runpy.run_module("pulumi.dynamic", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
