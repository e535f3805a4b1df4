"""A minimal HTTP/1.1 server connection on trio streams with h11, for the loopback IG sim.

Keep-alive, fixed-length and chunked (streaming) responses; nothing else. It exists so the IG
adapters are tested against real sockets and real HTTP framing rather than mocked clients.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import h11
import trio

MAX_BODY = 1 << 20


@dataclass(frozen=True, slots=True)
class SimRequest:
    """One request as the sim received it (tests inspect these)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = field(repr=False)

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def form(self) -> list[dict[str, str]]:
        """A TLCP body: one ``k=v&...`` request per line, values percent-decoded."""
        lines = self.body.decode("utf-8").splitlines()
        return [
            {k: unquote(v) for k, _, v in (p.partition("=") for p in line.split("&"))}
            for line in lines
            if line
        ]


class Dropped(Exception):
    """Raised by a handler to cut the connection without finishing the response."""


class ServerConnection:
    """One client connection: read requests, write responses (h11 does the framing)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_BODY)

    async def next_request(self) -> SimRequest | None:
        """The next complete request, or None when the client closed the connection."""
        if self._conn.our_state is h11.DONE and self._conn.their_state is h11.DONE:
            self._conn.start_next_cycle()
        head: h11.Request | None = None
        body = b""
        while True:
            event = self._conn.next_event()
            if event is h11.NEED_DATA:
                self._conn.receive_data(await self._stream.receive_some(65536))
            elif isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage) and head is not None:
                return _request(head, body)
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None

    @property
    def reusable(self) -> bool:
        return self._conn.our_state is h11.DONE and self._conn.their_state is h11.DONE

    async def respond(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json; charset=UTF-8",
        headers: dict[str, str] | None = None,
    ) -> None:
        fields = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        fields += list((headers or {}).items())
        await self._send(h11.Response(status_code=status, headers=fields))
        await self._send(h11.Data(data=body))
        await self._send(h11.EndOfMessage())

    async def respond_json(
        self, status: int, payload: Any, headers: dict[str, str] | None = None
    ) -> None:
        await self.respond(status, json.dumps(payload).encode(), headers=headers)

    async def start_stream(self, content_type: str) -> None:
        """A chunked response whose body follows in ``chunk`` calls."""
        fields = [("Content-Type", content_type), ("Cache-Control", "no-store")]
        await self._send(h11.Response(status_code=200, headers=fields))

    async def chunk(self, text: str) -> None:
        await self._send(h11.Data(data=text.encode("utf-8")))

    async def end_stream(self) -> None:
        await self._send(h11.EndOfMessage())

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def _send(self, event: h11.Event) -> None:
        data = self._conn.send(event)
        if data:
            await self._stream.send_all(data)


def _request(head: h11.Request, body: bytes) -> SimRequest:
    target = urlsplit(head.target.decode("ascii"))
    headers = {k.decode().lower(): v.decode() for k, v in head.headers}
    query = dict(parse_qsl(target.query, keep_blank_values=True))
    return SimRequest(head.method.decode(), target.path, query, headers, body)
