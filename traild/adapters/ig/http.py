"""HTTP plumbing of the IG adapters: secrets that print as stars, redacted httpcore traces, and
request bodies that leave nothing behind when cancelled."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from typing import Any, Protocol

import httpx


class SecretLike(Protocol):
    def get_secret_value(self) -> str: ...


class Secret:
    """A credential that prints as stars (accepts str or pydantic's SecretStr)."""

    __slots__ = ("_value",)

    def __init__(self, value: str | SecretLike | Secret) -> None:
        if isinstance(value, Secret):
            value = value.reveal()
        elif not isinstance(value, str):
            value = value.get_secret_value()
        self._value = value

    def reveal(self) -> str:
        return self._value

    get_secret_value = reveal  # a Secret is itself SecretLike

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__


# httpcore's DEBUG trace prints response headers verbatim, IG's session tokens included.
_TOKEN_HEADER = re.compile(r"\((b'(?:cst|x-security-token)'), b'[^']*'\)", re.IGNORECASE)


class RedactTokens(logging.Filter):
    """Blanks CST / X-SECURITY-TOKEN header values in httpcore's trace records."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if _TOKEN_HEADER.search(message):
            record.msg, record.args = _TOKEN_HEADER.sub(r"(\1, b'**********')", message), ()
        return True


def redact_http_traces() -> None:
    """Install RedactTokens on httpcore's protocol loggers (once; it only ever redacts)."""
    for name in ("httpcore.http11", "httpcore.http2"):
        target = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in target.filters):
            target.addFilter(RedactTokens())


class _Once:
    """An async iterator over one chunk of bytes (a class, not an async generator)."""

    def __init__(self, data: bytes) -> None:
        self._data: bytes | None = data

    def __aiter__(self) -> _Once:
        return self

    async def __anext__(self) -> bytes:
        if self._data is None:
            raise StopAsyncIteration
        data, self._data = self._data, None
        return data


class OneShotBody(httpx.AsyncByteStream):
    """A request body that leaves no async generator behind when its request is cancelled.

    httpx iterates request bodies through async generators; cancelling a request while the
    body is being written abandons one, and trio reports each abandoned generator as a
    ResourceWarning. A plain iterator has nothing to abandon.
    """

    def __init__(self, data: bytes) -> None:
        self._data = data

    def __aiter__(self) -> AsyncIterator[bytes]:
        return _Once(self._data)


def build_request(
    client: httpx.AsyncClient, method: str, url: str, content: bytes = b"", **options: Any
) -> httpx.Request:
    """``client.build_request`` with a OneShotBody; send it with ``client.send``."""
    request = client.build_request(method, url, content=content, **options)
    request.stream = OneShotBody(content)
    return request
