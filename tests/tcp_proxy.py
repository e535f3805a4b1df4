"""A loopback TCP proxy that a test can cut and restore (a database outage on demand).

``cut()`` closes the listening socket and every open link, so connections in use break and new
ones are refused (ECONNREFUSED) until ``restore()`` listens again on the same port.
"""

from __future__ import annotations

import contextlib
import errno

import trio


class TcpProxy:
    """127.0.0.1:<port> -> 127.0.0.1:<target>; run it with ``await nursery.start(proxy.run)``."""

    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.target_port = target_port
        self.port = 0
        self.links = 0  # connections accepted while up
        self._nursery: trio.Nursery | None = None
        self._scope: trio.CancelScope | None = None  # listener and links of the current "up"
        self._up = trio.Event()

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await self._listen()
            task_status.started()
            await trio.sleep_forever()

    async def _listen(self) -> None:
        assert self._nursery is not None
        for _ in range(100):  # the old socket may linger an instant after a cut
            try:
                listeners = await trio.open_tcp_listeners(self.port, host=self.host)
                break
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                await trio.sleep(0.05)
        else:
            raise RuntimeError(f"cannot listen on {self.host}:{self.port} again")
        self.port = listeners[0].socket.getsockname()[1]
        scope = self._scope = trio.CancelScope()
        self._nursery.start_soon(self._serve, listeners, scope)

    async def _serve(self, listeners: list[trio.SocketListener], scope: trio.CancelScope) -> None:
        with scope:
            await trio.serve_listeners(self._handle, listeners)
        for listener in listeners:
            await listener.aclose()

    async def _handle(self, client: trio.SocketStream) -> None:
        self.links += 1
        try:
            upstream = await trio.open_tcp_stream(self.host, self.target_port)
        except OSError:
            await client.aclose()
            return
        async with client, upstream, trio.open_nursery() as pipes:
            pipes.start_soon(_pump, client, upstream, pipes.cancel_scope)
            pipes.start_soon(_pump, upstream, client, pipes.cancel_scope)

    def cut(self) -> None:
        """Refuse new connections and break the open ones."""
        if self._scope is not None:
            self._scope.cancel()
            self._scope = None

    async def restore(self) -> None:
        """Listen again on the same port."""
        if self._scope is None:
            await self._listen()


async def _pump(source: trio.SocketStream, sink: trio.SocketStream, done: trio.CancelScope) -> None:
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        while data := await source.receive_some(65536):
            await sink.send_all(data)
    done.cancel()
