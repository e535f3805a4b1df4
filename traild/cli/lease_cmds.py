"""``traild lease``: who owns each broker account (issue #22)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from traild.cli.args import CONFIG_HELP


def register(sub: Any) -> None:
    p = sub.add_parser(
        "lease",
        help="who owns each broker account",
        description="Every account's lease in the database: its owner (host:pid:start), the "
        "fencing token, and how long it stays valid unrenewed (by the database's clock). A "
        "standby takes over an account whose lease has expired.",
    )
    p.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_lease)


def _lease(args: argparse.Namespace) -> int:
    import trio

    from traild.adapters.store import open_store
    from traild.config.settings import load
    from traild.core.lease import LeaseRow

    settings = load(args.config)

    async def read() -> tuple[float, list[LeaseRow]]:
        async with open_store(settings.database_url()) as store:
            return await store.leases().leases()

    now, rows = trio.run(read)
    leases = [
        {
            "account": r.account,
            "owner": r.owner,
            "fencing_token": r.token,
            "state": "held" if r.expires > now else "expired",
            "expires_in_s": round(r.expires - now, 1),
        }
        for r in rows
    ]
    if args.json:
        print(json.dumps({"leases": leases}))
        return 0
    if not leases:
        print("no leases: no traild has owned an account on this database yet")
        return 0
    print(f"{'account':<24} {'owner':<48} {'token':>6}  state")
    for r in rows:
        left = round(r.expires - now, 1)
        state = f"held ({left:g} s left)" if left > 0 else f"expired {-left:g} s ago"
        print(f"{r.account:<24} {r.owner:<48} {r.token:>6}  {state}")
    return 0
