"""The browser console: a WebSocket joined to a VM's serial console over SSH, the way `cloudrepo console`
joins a terminal to it (`console.attach_argv`: the same worker script, the same lock, so a second client of
either kind is refused naming the holder)."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any

import paramiko
from starlette.websockets import WebSocket, WebSocketDisconnect

from cloudrepo import console, hostaccess
from cloudrepo.engine import SliceError, Slices
from vocabulary import naming

READ = 65536


def holder(user: str) -> str:
    return naming.console_holder(console.who(f"the portal's console for {user}"), datetime.now(UTC))


def open_console(slices: Slices, name: str, vm: int, user: str) -> tuple[paramiko.SSHClient, Any, bytes]:
    """The SSH client, the attached channel and the first bytes after the attach; `SliceError` saying
    why not (not deployed, not launched, not running, in use)."""
    target = console.target(name, vm, slices.outputs(name))
    endpoint, login = hostaccess.worker_login(slices, name, target.worker)
    client = hostaccess.connect(endpoint, login)
    try:
        chan = console.open_script(client, console.attach_argv(vm, holder(user)), login.sudo)
        first = console.wait_attached(chan, 3 * login.connect_timeout)
        if first is None:
            _, err, status = console.drain(chan)
            raise SliceError(console.refusal(target, status, err.decode(errors="replace")))
    except BaseException:
        client.close()
        raise
    return client, chan, first


async def pump(ws: WebSocket, chan: Any) -> None:
    """Copy bytes both ways until either side ends."""
    loop = asyncio.get_running_loop()

    async def from_guest() -> None:
        while True:
            data = await loop.run_in_executor(None, chan.recv, READ)
            if not data:
                return
            await ws.send_bytes(data)

    async def to_guest() -> None:
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                return
            data = msg.get("bytes") or (msg.get("text") or "").encode()
            if data:
                await loop.run_in_executor(None, chan.sendall, data)

    tasks = [asyncio.create_task(from_guest()), asyncio.create_task(to_guest())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    except WebSocketDisconnect:
        pass
    finally:
        for t in tasks:
            t.cancel()
        await loop.run_in_executor(None, console.hang_up, chan)
        with contextlib.suppress(Exception):
            await ws.close()
