"""The IG sim's logins and session tokens (POST/PUT/DELETE /session, the streaming password).

Rules, each with its public source:
* POST /session v2 answers CST and X-SECURITY-TOKEN headers and the account list (IG REST
  reference, /session POST v2; labs.ig.com/rest-api-guide-example-requests).
* Wrong identifier or password: 401 ``error.security.invalid-details``; after
  ``lock_after_failures`` failed logins every login, right or wrong, gets 401
  ``error.security.too-many-failed-attempts`` (IG REST reference, /session POST exceptions:
  "Maximum number of failed login attempts have been reached"). How many failures IG allows
  and how long the lock lasts are not published: the count is a knob and the lock lasts until
  ``unlock`` (assumption).
* A wrong API key: 403 ``error.security.api-key-invalid`` (IG REST reference, exceptions of
  every service; 403 as reported by trading-ig users, assumption on the status).
* Tokens expire ``token_ttl`` seconds after login (IG Labs FAQ: 12 h from the last call) and
  all of them are invalidated at the weekend maintenance (IG Labs FAQ, labs.ig.com/faq):
  ``expire_all``. A request with an invalid token: 401 ``error.security.client-token-invalid``.
* PUT /session v1 switches the account (IG REST reference); an unknown account id: 400
  ``error.switch.invalid-accountId`` (the code as the ig_markets Ruby gem maps IG's errors;
  the status is an assumption).
* The streaming password is ``CST-<cst>|XST-<xst>``, the user the account id (IG streaming
  API guide, labs.ig.com/streaming-api-guide).
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field
from typing import Any

import trio

Reply = tuple[int, Any, dict[str, str]]


@dataclass
class SessionBook:
    """Who may log in, the live tokens (cst -> (xst, account, expiry)) and the counters."""

    identifier: str
    password: str
    account_id: str
    accounts: list[str]
    token_ttl: float | None = None
    lock_after_failures: int | None = None
    logins: int = 0
    failed_logins: int = 0
    tokens: dict[str, tuple[str, str, float]] = field(default_factory=dict)

    @property
    def locked(self) -> bool:
        limit = self.lock_after_failures
        return limit is not None and self.failed_logins >= limit

    def unlock(self) -> None:
        self.failed_logins = 0

    def expire_all(self) -> None:
        self.tokens.clear()

    def login(self, body: dict[str, Any], stream_url: str) -> Reply:
        if self.locked:
            return 401, {"errorCode": "error.security.too-many-failed-attempts"}, {}
        if body.get("identifier") != self.identifier or body.get("password") != self.password:
            self.failed_logins += 1
            return 401, {"errorCode": "error.security.invalid-details"}, {}
        cst, xst = f"CST{secrets.token_hex(12)}", f"XST{secrets.token_hex(12)}"
        expiry = trio.current_time() + (self.token_ttl if self.token_ttl else math.inf)
        self.tokens[cst] = (xst, self.account_id, expiry)
        self.logins += 1
        payload = {
            "accountType": "CFD",
            "currencyIsoCode": "USD",
            "currentAccountId": self.account_id,
            "lightstreamerEndpoint": stream_url,
            "accounts": [
                {"accountId": a, "accountName": a, "preferred": a == self.account_id}
                for a in self.accounts
            ],
            "clientId": "SIMCLIENT",
            "timezoneOffset": 0,
            "dealingEnabled": True,
            "trailingStopsEnabled": False,
        }
        return 200, payload, {"CST": cst, "X-SECURITY-TOKEN": xst}

    def session_op(self, method: str, cst: str, body: Any, account: str) -> Reply:
        """DELETE /session (log out) or PUT /session (switch account)."""
        if method == "DELETE":
            self.tokens.pop(cst, None)
            return 200, {}, {}
        target = (body or {}).get("accountId")
        if method != "PUT" or target not in self.accounts:
            return 400, {"errorCode": "error.switch.invalid-accountId"}, {}
        if target == account:
            return 412, {"errorCode": "error.switch.accountId-must-be-different"}, {}
        xst = f"XST{secrets.token_hex(12)}"
        self.tokens[cst] = (xst, target, self.tokens[cst][2])
        return 200, {"dealingEnabled": True}, {"X-SECURITY-TOKEN": xst}

    def account_of(self, cst: str, xst: str | None) -> str | None:
        entry = self.tokens.get(cst)
        if entry is None or entry[0] != xst:
            return None
        return entry[1] if entry[2] > trio.current_time() else None

    def account_for_stream(self, user: str, password: str) -> bool:
        cst, _, xst = password.partition("|")
        entry = self.tokens.get(cst.removeprefix("CST-"))
        valid = entry is not None and entry[2] > trio.current_time()
        return (
            valid
            and entry is not None
            and entry[0] == xst.removeprefix("XST-")
            and (entry[1] == user)
        )
