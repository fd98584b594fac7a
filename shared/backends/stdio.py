"""A backend started as a child process, speaking newline-delimited JSON-RPC on stdin/stdout.

The child runs in its own process group so that shutdown reaches everything it started
(npx, shells); stderr lines go to the log under the server's name.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal

from shared.backends.base import BackendConnection
from shared.protocol.errors import BackendUnavailable, GatewayError
from shared.protocol.jsonrpc import decode_message

__all__ = ["StdioConnection"]

log = logging.getLogger("aggregator.backend")

_LINE_LIMIT = 64 * 1024 * 1024
_STOP_WAIT = 3.0


class StdioConnection(BackendConnection):
    transport = "stdio"

    _process: asyncio.subprocess.Process | None = None

    async def open_transport(self) -> None:
        spec = self.spec
        assert spec.command
        env = {**os.environ, **spec.env}
        try:
            self._process = await asyncio.create_subprocess_exec(
                spec.command,
                *spec.args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                cwd=spec.cwd,
                limit=_LINE_LIMIT,
                start_new_session=True,
            )
        except OSError as exc:
            raise BackendUnavailable(
                self.server,
                f"cannot start backend {self.server!r}: {spec.command}: {exc.strerror or exc}"
                " (check mcpServers[].command and that the program is installed)",
            ) from exc
        self._write_lock = asyncio.Lock()
        self._spawn(self._read_stdout())
        self._spawn(self._read_stderr())

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    async def _send_message(self, body: bytes) -> None:
        process = self._process
        if process is None or process.stdin is None or process.stdin.is_closing():
            raise BackendUnavailable(self.server, f"backend {self.server!r} is not running")
        async with self._write_lock:
            try:
                process.stdin.write(body + b"\n")
                await process.stdin.drain()
            except (BrokenPipeError, ConnectionResetError) as exc:
                raise BackendUnavailable(self.server, f"backend {self.server!r} closed its stdin") from exc

    async def _read_stdout(self) -> None:
        process = self._process
        assert process is not None and process.stdout is not None
        while True:
            try:
                line = await process.stdout.readline()
            except (ValueError, asyncio.LimitOverrunError):
                log.warning("backend %s wrote a line over %d bytes; dropped", self.server, _LINE_LIMIT)
                continue
            if not line:
                break
            if not line.strip():
                continue
            try:
                message = decode_message(line)
            except GatewayError:
                log.warning("backend %s wrote a non-JSON-RPC line to stdout: %.200r", self.server, line)
                continue
            assert not isinstance(message, list)
            self._dispatch(message)
        code = await process.wait()
        self._lose(f"exited with code {code}")

    async def _read_stderr(self) -> None:
        process = self._process
        assert process is not None and process.stderr is not None
        while line := await process.stderr.readline():
            log.info("%s", line.decode("utf-8", "replace").rstrip(), extra={"server": self.server, "stream": "stderr"})

    async def close_transport(self) -> None:
        """Close stdin, then SIGTERM, then SIGKILL the process group; always reap."""
        process = self._process
        if process is None or process.returncode is not None:
            return
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, sig)
            try:
                await asyncio.wait_for(process.wait(), _STOP_WAIT)
                break
            except TimeoutError:
                continue
        # Children that outlived the leader still belong to the group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
