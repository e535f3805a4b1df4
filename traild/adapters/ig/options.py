"""How an ``IGBroker`` is set up: small frozen value objects, one per concern (as httpx's
``Timeout`` and ``Limits``), each with the defaults a live account needs.

``IGCredentials`` (where and who: the API key and password stay ``Secret``, never in a repr),
``IGTimeouts``, ``IGRetry``, ``IGLimits`` (IG's request allowances), ``IGEvents`` (the TRADE
stream and the REST polling behind it), ``IGTakeOver`` (stops traild may take over), ``IGMarkets``
(the /markets cache) and ``IGStream`` (the account's Lightstreamer session). The composition root
fills them from ``[broker.ig]``; tests build the ones they change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from traild.adapters.ig.http import Secret, SecretLike
from traild.adapters.ig.tlcp import DEFAULT_TLCP_VERSION
from traild.adapters.ig.wire import POINT_SIZES

_SIX_HOURS = 6 * 3600.0
# After the keep-alive CONOK assigns, a silent stream is given this long before it counts as
# dead: Lightstreamer's own clients wait stalledTimeout (2 s) then reconnectTimeout (3 s)
# (ConnectionOptions defaults, Lightstreamer-lib-client-haxe src/wrapper/js/ConnectionOptions.js).
STALL_MARGIN_S = 5.0


@dataclass(frozen=True, slots=True, init=False)
class IGCredentials:
    """The REST endpoint and the login. Only ``base_url`` and ``account_id`` print."""

    base_url: str
    api_key: Secret = field(repr=False, compare=False)
    identifier: Secret = field(repr=False, compare=False)
    password: Secret = field(repr=False, compare=False)
    account_id: str | None = None  # None: the login's default account

    def __init__(
        self,
        base_url: str,
        api_key: str | SecretLike,
        identifier: str | SecretLike,
        password: str | SecretLike,
        account_id: str | None = None,
    ) -> None:
        object.__setattr__(self, "base_url", base_url)
        object.__setattr__(self, "api_key", Secret(api_key))
        object.__setattr__(self, "identifier", Secret(identifier))
        object.__setattr__(self, "password", Secret(password))
        object.__setattr__(self, "account_id", account_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class IGTimeouts:
    """Seconds: every REST request's timeout, the session's life before a fresh login (None:
    only on a 401), and how long an amendment waits for its verdict on the TRADE stream before
    asking ``GET /confirms``."""

    request: float = 10.0
    session_refresh: float | None = _SIX_HOURS
    confirm_stream_wait: float = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class IGRetry:
    """``login_backoff``: (initial, max) seconds between first-login attempts after a transient
    failure (None: fail at once); ``confirm_attempts`` polls of ``GET /confirms``,
    ``confirm_interval`` apart."""

    login_backoff: tuple[float, float] | None = None
    confirm_attempts: int = 10
    confirm_interval: float = 0.2


@dataclass(frozen=True, slots=True, kw_only=True)
class IGLimits:
    """IG's request allowances per ``window`` seconds: trading (amendments), account (other
    requests) and application (the API key). None: read from ``/operations/application``."""

    trading: int | None = None
    account: int | None = None
    application: int | None = None
    window: float = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class IGEvents:
    """Where position events come from: the TRADE stream (``use_stream``) with a REST
    reconciliation every ``reconcile_interval``, or (without it, or while it is down) a poll
    every ``poll_interval`` seconds."""

    use_stream: bool = True
    poll_interval: float = 5.0
    reconcile_interval: float = 300.0


@dataclass(frozen=True, slots=True, kw_only=True)
class IGTakeOver:
    """Stops traild manages although IG's position has them: guaranteed (kept guaranteed) and
    IG-trailing (turned into traild's plain stop)."""

    guaranteed: bool = False
    trailing: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class IGMarkets:
    """The ``GET /markets`` cache: dealing rules kept ``rules_ttl`` seconds, a failed read
    retried after ``rules_retry``; ``point_sizes`` the price size of one IG point by symbol."""

    rules_ttl: float = _SIX_HOURS
    rules_retry: float = 60.0
    point_sizes: Mapping[str, Decimal] = field(default_factory=lambda: POINT_SIZES)


@dataclass(frozen=True, slots=True, kw_only=True)
class IGStream:
    """The account's one Lightstreamer session: ``url`` overrides the login's endpoint."""

    url: str | None = None
    keepalive_ms: int = 5000
    timeout: float = 10.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    tlcp_version: str = DEFAULT_TLCP_VERSION
    stall_margin: float = STALL_MARGIN_S  # silence beyond the assigned keep-alive

    def client_options(self) -> dict[str, Any]:
        """The keyword arguments of ``LightstreamerClient``."""
        return {
            "keepalive_ms": self.keepalive_ms,
            "timeout": self.timeout,
            "backoff_initial": self.backoff_initial,
            "backoff_max": self.backoff_max,
            "tlcp_version": self.tlcp_version,
            "stall_margin": self.stall_margin,
        }
