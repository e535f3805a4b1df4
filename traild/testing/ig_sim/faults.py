"""What the IG sim refuses or delays: faults injected by a test (``IGSim.fail_next``,
``IGSim.delay``) and IG's request allowances, enforced per minute."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import trio


@dataclass
class Fault:
    method: str
    prefix: str
    times: int
    status: int = 0
    code: str = ""
    seconds: float = 0.0
    apply_first: bool = False


@dataclass
class Allowance:
    """Requests in the last window; IG's allowances are "per minute" (labs.ig.com/faq). A
    sliding window is an assumption (IG does not say fixed or sliding; sliding is stricter)."""

    limit: int | None
    sent: list[float] = field(default_factory=list)
    peak: int = 0
    refused: int = 0


def take_fault(faults: list[Fault], method: str, rel: str) -> Fault | None:
    """The first injected fault matching the request, one of its ``times`` used up."""
    for fault in faults:
        if fault.method == method and rel.startswith(fault.prefix) and fault.times > 0:
            fault.times -= 1
            return fault
    return None


async def wait(seconds: float) -> None:
    """``trio.sleep``; ``math.inf``: never return (an answer that never comes)."""
    if math.isinf(seconds):
        await trio.sleep_forever()
    await trio.sleep(seconds)


_CODES = {
    "trading": "error.public-api.exceeded-account-trading-allowance",
    "account": "error.public-api.exceeded-account-allowance",
    "app": "error.public-api.exceeded-api-key-allowance",
}


def spend(allowances: dict[str, Allowance], window: float, trading: bool) -> str | None:
    """IG's allowances (labs.ig.com/faq; trading-ig docs/faq.rst): trading requests count
    against the account's trading allowance, all others against the account's and the
    application's overall (non-trading) allowances. Refused requests count too
    (assumption). Exceeding answers 403 with IG's error codes (returned here)."""
    kinds = ("trading",) if trading else ("account", "app")
    now = trio.current_time()
    refused = None
    for kind in kinds:
        allowance = allowances[kind]
        sent = allowance.sent
        while sent and sent[0] <= now - window:
            sent.pop(0)
        if allowance.limit is None:
            continue
        if len(sent) >= allowance.limit:
            allowance.refused += 1
            refused = refused or _CODES[kind]
            continue
        sent.append(now)
        allowance.peak = max(allowance.peak, len(sent))
    return refused
