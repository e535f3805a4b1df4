"""IG REST session: login (v2), token refresh, account switch, request error mapping.

Shared by the broker (REST) and the stream (Lightstreamer needs the account id and the
CST/X-SECURITY-TOKEN pair). Credentials are held as ``Secret`` and never logged; error
messages carry IG's ``errorCode`` only.
"""

from __future__ import annotations

import json as _json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

import httpx
import trio
from loguru import logger

from traild.adapters.ig.allowance import Allowance
from traild.adapters.ig.http import Secret, build_request, redact_http_traces
from traild.adapters.ig.options import IGCredentials
from traild.core.errors import (
    BrokerConfigRefused,
    BrokerError,
    BrokerRejected,
    BrokerTimeout,
    BrokerUnavailable,
    RateLimited,
)

DEMO_URL = "https://demo-api.ig.com/gateway/deal"
LIVE_URL = "https://api.ig.com/gateway/deal"
_JSON = "application/json; charset=UTF-8"


def utcnow() -> datetime:
    return datetime.now(UTC)


def _error_code(response: httpx.Response) -> str:
    """IG's ``errorCode`` (never the raw body: it is not ours to echo)."""
    try:
        code = response.json().get("errorCode")
    except (ValueError, AttributeError):
        code = None
    return str(code)[:120] if code else f"HTTP {response.status_code}"


def is_allowance_error(code: str) -> bool:
    return code.startswith("error.public-api.exceeded-") and "allowance" in code


# Refusals of the API key on any request (IG REST reference, "Exceptions" of every service:
# error.security.api-key-invalid/-disabled/-restricted/-revoked/-missing, 403
# endpoint.unavailable.for.api-key): the key, not the request, is wrong.
_KEY_REFUSALS = ("error.security.api-key-", "endpoint.unavailable.for.api-key")
# What to check, by the login refusals of POST /session (IG REST reference, /session POST
# exceptions: 401 error.security.invalid-details, 401 error.security.too-many-failed-attempts,
# 401 error.security.account-suspended, error.public-api.failure.*, ...).
_LOGIN_HINTS = {
    "error.security.too-many-failed-attempts": "IG locked logins after failed attempts: "
    "fix broker.ig.password, wait, then start traild again",
    "error.security.api-key-": "check broker.ig.api_key (and that it is for this environment)",
    "endpoint.unavailable.for.api-key": "the API key is not for this environment: "
    "check broker.ig.api_key and api_url (demo or live)",
    "error.public-api.failure.": "IG does not let this account use the API yet: log in on "
    "IG's web platform",
}
_DEFAULT_HINT = "check broker.ig.identifier, password and api_key"


def login_refusal(code: str) -> BrokerConfigRefused:
    """The error for a login IG refused with ``code`` (never the credentials themselves)."""
    hint = next((h for c, h in _LOGIN_HINTS.items() if code.startswith(c)), _DEFAULT_HINT)
    return BrokerConfigRefused(f"IG refused the login: {code} ({hint})")


class IGSession:
    """An authenticated IG REST session owning an httpx client; shared by broker and stream.

    Tokens are renewed ``refresh_after`` seconds after login and once on a 401 (the failed
    request is then retried once: IG refuses a request with a bad token before processing it).
    """

    def __init__(
        self,
        credentials: IGCredentials,
        *,
        timeout: float = 10.0,
        refresh_after: float | None = 6 * 3600.0,
        stream_url: str | None = None,
        login_backoff: tuple[float, float] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._base_url = credentials.base_url.rstrip("/")
        self._api_key = credentials.api_key
        self._identifier = credentials.identifier
        self._password = credentials.password
        self.account_id = credentials.account_id
        self.timeout = timeout
        self._refresh_after = refresh_after
        self._stream_url = stream_url
        self._clock = clock
        self._client: httpx.AsyncClient | None = None
        self._tokens: tuple[Secret, Secret] | None = None
        self._lightstreamer: str | None = None
        self._generation = 0
        self._login_at = 0.0
        self._lock = trio.Lock()
        self._login_backoff = login_backoff
        self._refused: BrokerConfigRefused | None = None
        self.logins = 0
        self.allowance = Allowance()
        redact_http_traces()

    def __repr__(self) -> str:
        return f"IGSession({self._base_url!r}, account_id={self.account_id!r})"

    async def __aenter__(self) -> Self:
        self._client = httpx.AsyncClient(
            base_url=self._base_url,
            timeout=httpx.Timeout(self.timeout),
            headers={
                "X-IG-API-KEY": self._api_key.reveal(),
                "Accept": _JSON,
                "Content-Type": _JSON,
            },
        )
        try:
            await self._first_login()
        except BaseException:
            await self._client.aclose()
            raise
        return self

    async def _first_login(self) -> None:
        """Log in; with ``login_backoff`` (initial, max seconds) a transient failure (network,
        5xx, allowance) is retried after a doubling, capped wait, each one logged. A refusal
        of the credentials is never retried (IG locks the account after repeated failures)."""
        delay = self._login_backoff[0] if self._login_backoff else 0.0
        while True:
            try:
                await self._login()
                return
            except (BrokerUnavailable, BrokerTimeout, RateLimited) as exc:
                if self._login_backoff is None:
                    raise
                wait = max(delay, exc.retry_after) if isinstance(exc, RateLimited) else delay
                logger.bind(event="broker.login_failed", error=str(exc), retry_in=wait).warning(
                    "IG login failed ({}); retrying in {:.0f}s", exc, wait
                )
                await trio.sleep(wait)
                delay = min(delay * 2, self._login_backoff[1])

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._client is not None
        with trio.CancelScope(shield=True):  # log out and close even when being cancelled
            with trio.move_on_after(min(self.timeout, 2.0)):
                try:
                    await self._send(_Call("DELETE", "session", 1))
                except BrokerError as error:
                    logger.bind(event="broker.logout_failed").debug("IG logout failed: {}", error)
            await self._client.aclose()

    # -- requests --------------------------------------------------------------------------
    async def request(
        self,
        method: str,
        path: str,
        *,
        version: int,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        may_apply: bool = False,
        not_found_ok: bool = False,
    ) -> httpx.Response | None:
        """Send an authenticated request; None for a 404 when ``not_found_ok``.

        ``may_apply``: the request changes state at IG, so a transport failure after sending
        means "outcome unknown" (BrokerTimeout), not "retry freely" (BrokerUnavailable).
        """
        await self._ensure_fresh()
        generation = self._generation
        trading = method in ("PUT", "POST", "DELETE") and path.startswith("positions/otc")
        call = _Call(method, path, version, json, params, may_apply)
        response = await self._counted(trading, call)
        if response.status_code == 401:
            logger.bind(event="broker.session_expired").info("IG session refused; logging in")
            await self._relogin(generation)
            response = await self._counted(trading, call)
        if response.status_code == 404 and not_found_ok:
            return None
        self._raise_for(response, f"{method} /{path}")
        return response

    async def _counted(self, trading: bool, call: _Call) -> httpx.Response:
        slots = await self.allowance.spend(trading)
        try:
            return await self._send(call)
        finally:
            self.allowance.done(slots)

    async def stream_auth(self, refused: StreamAuth | None = None) -> StreamAuth:
        """Lightstreamer endpoint and credentials (user = account id, CST/XST tokens).

        ``refused``: the credentials the stream server just refused (CONERR 1). They are
        renewed by one login unless someone logged in since they were handed out: a REST 401
        and a refused stream, or two refusals, seen together log in once (single flight).
        """
        if refused is not None:
            await self._relogin(refused.generation)
        await self._ensure_fresh()
        assert self._tokens is not None and self.account_id is not None
        cst, xst = (token.reveal() for token in self._tokens)
        endpoint = self._stream_url or self._lightstreamer
        if not endpoint:
            raise BrokerUnavailable("IG session has no lightstreamerEndpoint; set stream_url")
        return StreamAuth(endpoint, self.account_id, f"CST-{cst}|XST-{xst}", self._generation)

    def retry_after(self) -> float:
        """Seconds to the next minute boundary (IG allowances are per minute), at least 1."""
        now = self._clock()
        return max(1.0, 60.0 - now.second - now.microsecond / 1e6 + 1.0)

    async def _send(self, call: _Call) -> httpx.Response:
        assert self._client is not None, "use IGSession as an async context manager"
        method, path, json = call.method, call.path, call.json
        headers = {"VERSION": str(call.version)}
        if self._tokens is not None:
            headers["CST"], headers["X-SECURITY-TOKEN"] = (t.reveal() for t in self._tokens)
        what = f"IG {method} /{path}"
        body = b"" if json is None else _json.dumps(json, separators=(",", ":")).encode()
        request = build_request(
            self._client, method, path, body, params=call.params, headers=headers
        )
        try:
            return await self._client.send(request)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise BrokerUnavailable(f"{what}: cannot connect ({type(exc).__name__})") from exc
        except httpx.TimeoutException as exc:
            raise BrokerTimeout(f"{what}: no answer within {self.timeout:g}s") from exc
        except httpx.TransportError as exc:
            kind = BrokerTimeout if call.may_apply else BrokerUnavailable
            raise kind(f"{what}: connection failed ({type(exc).__name__})") from exc

    def _raise_for(self, response: httpx.Response, what: str) -> None:
        status = response.status_code
        if status < 400:
            return
        code = _error_code(response)
        if status == 429 or (status == 403 and is_allowance_error(code)):
            wait = self.retry_after()
            logger.bind(event="broker.rate_limited", code=code, retry_after=wait).warning(
                "IG allowance exceeded on {} ({}); retry in {:.0f}s", what, code, wait
            )
            raise RateLimited(f"IG allowance exceeded on {what}: {code}", retry_after=wait)
        if status >= 500:
            raise BrokerUnavailable(f"IG {status} on {what}: {code}")
        if code.startswith(_KEY_REFUSALS):
            raise BrokerConfigRefused(f"IG {status} on {what}: {code} (check broker.ig.api_key)")
        raise BrokerRejected(f"IG {status} on {what}: {code}")

    # -- login -----------------------------------------------------------------------------
    async def _ensure_fresh(self) -> None:
        age = trio.current_time() - self._login_at
        if self._tokens is None or (self._refresh_after is not None and age >= self._refresh_after):
            await self._relogin(self._generation)

    async def _relogin(self, generation: int) -> None:
        """Log in again unless another task already did since ``generation``."""
        async with self._lock:
            if self._generation == generation:
                await self._login()

    async def _login(self) -> None:
        """POST /session v2. A refusal is remembered: every later login raises it again
        without asking IG (the configuration must change, and IG counts failed attempts)."""
        if self._refused is not None:
            raise BrokerConfigRefused(str(self._refused))
        self._tokens = None
        body = {"identifier": self._identifier.reveal(), "password": self._password.reveal()}
        response = await self._send(_Call("POST", "session", 2, body))
        if response.status_code != 200:
            code = _error_code(response)
            status = response.status_code
            if status >= 500:
                raise BrokerUnavailable(f"IG login failed: {status} {code}")
            if status == 429 or is_allowance_error(code):
                raise RateLimited(f"IG login refused: {code}", retry_after=self.retry_after())
            # Any other 4xx is about what traild sent: credentials, key, account (assumption
            # for codes IG does not list; every listed one is such a refusal).
            self._refused = login_refusal(code)
            raise self._refused
        cst, xst = response.headers.get("CST"), response.headers.get("X-SECURITY-TOKEN")
        if not cst or not xst:
            raise BrokerUnavailable("IG login answered without session tokens")
        self._tokens = (Secret(cst), Secret(xst))
        data = response.json()
        self._lightstreamer = data.get("lightstreamerEndpoint")
        current = data.get("currentAccountId")
        if self.account_id and current and current != self.account_id:
            await self._switch_account()
        else:
            self.account_id = self.account_id or current
        self._generation += 1
        self._login_at = trio.current_time()
        self.logins += 1
        logger.bind(event="broker.login", account_id=self.account_id).info(
            "IG session opened for account {}", self.account_id
        )

    async def _switch_account(self) -> None:
        body = {"accountId": self.account_id, "defaultAccount": False}
        response = await self._send(_Call("PUT", "session", 1, body))
        if 400 <= response.status_code < 500 and response.status_code != 429:
            code = _error_code(response)
            self._refused = BrokerConfigRefused(
                f"IG refused account {self.account_id}: {code} (check broker.ig.account_id)"
            )
            raise self._refused
        self._raise_for(response, "PUT /session (switch account)")
        xst = response.headers.get("X-SECURITY-TOKEN")
        if xst and self._tokens is not None:
            self._tokens = (self._tokens[0], Secret(xst))


@dataclass(frozen=True, slots=True)
class _Call:
    """One REST request as sent (``may_apply``: see ``IGSession.request``)."""

    method: str
    path: str
    version: int
    json: Any = None
    params: Mapping[str, str] | None = None
    may_apply: bool = False


@dataclass(frozen=True, slots=True)
class StreamAuth:
    """Where and how to open a Lightstreamer session (IG: account id and CST/XST tokens)."""

    endpoint: str
    user: str
    password: str = field(repr=False)
    generation: int = 0  # which login issued the tokens (see IGSession.stream_auth)


StreamAuthProvider = Callable[[StreamAuth | None], Awaitable[StreamAuth]]
"""``auth(refused)``: credentials for a new session; ``refused`` the ones just refused."""
