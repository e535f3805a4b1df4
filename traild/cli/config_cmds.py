"""``traild config set|unset|show|history``: per-pair configuration in the database.

The file stays the source of defaults; these commands edit the overrides in ``trailing_config``
(every change audited). A change is validated exactly as the file is, against the file's current
contents, before it is written; the running daemon applies it within one poll interval.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from traild.cli.args import CONFIG_HELP, WHO_MAX, actions_of, positive_int, who
from traild.cli.config_db import (
    Effective,
    environ,
    read_effective,
    run_on_config_store,
    who_am_i,
)
from traild.config.service import KINDS, apply_overrides, pair_view, value_sources
from traild.config.settings import Settings, load
from traild.core.calculator import StageConfig
from traild.core.errors import ConfigError, InstrumentError, UsageError
from traild.core.instruments import symbol_of
from traild.core.overrides import (
    DAEMON_SCOPE,
    TRAILING_KEYS,
    TRAILING_SCOPE,
    ConfigChange,
    ConfigOverride,
    canonical_scope,
    check_key,
    key_path,
    parse_assignment,
)


def register(sub: Any) -> None:
    actions = actions_of(sub, "config", "per-pair configuration in the database")
    p = _action(actions, "set")
    p.add_argument("pair", metavar="PAIR", help=_PAIR_HELP)
    p.add_argument(
        "assignments",
        nargs="+",
        metavar="KEY=VALUE",
        help=f"KEY: {_KEY_HELP}; VALUE: pips (a comma-separated list of pairs for "
        "dynamic_trailing_pairs)",
    )
    _common(p, by=True)
    p.set_defaults(func=_set)

    p = _action(actions, "unset")
    p.add_argument("pair", metavar="PAIR", help=_PAIR_HELP)
    p.add_argument("keys", nargs="+", metavar="KEY", help=_KEY_HELP)
    _common(p, by=True)
    p.set_defaults(func=_unset)

    p = _action(actions, "show")
    p.add_argument("pair", nargs="?", metavar="PAIR", help=_PAIR_HELP)
    _common(p, json_=True)
    p.set_defaults(func=_show)

    p = actions.add_parser("history", help="the audit trail of configuration changes")
    p.add_argument("pair", nargs="?", metavar="PAIR")
    p.add_argument("--limit", type=positive_int, metavar="N", help="only the last N changes")
    _common(p, json_=True)
    p.set_defaults(func=_history)


_PAIR_HELP = (
    "an epic (CS.D.EURUSD.MINI.IP), a symbol (EURUSD), DEFAULT (every pair without its own "
    "table), 'trailing' (the rollout allowlist) or 'daemon' (halt: the global kill switch)"
)
_KEY_HELP = (
    "regular.<stage key> or scalp.<stage key> (stage keys: early_be_trigger, early_be_buffer, "
    "stage1_trigger, stage1_lock, stage2_trigger, stage2_lock, stage3_trigger, "
    "stage3_atr_multiplier, stage3_min_distance), <regular|scalp>.regimes.<market_regime>."
    "<stage key>, dynamic_trailing_pairs under 'trailing', or halt under 'daemon'"
)
# action -> its help line, its description and the examples ending its --help
_DOCS = {
    "set": (
        "override keys of a pair (or the rollout allowlist)",
        "Override stage keys of a pair in the database (validated like the file; the running "
        "daemon applies them within one poll interval).",
        """examples:
  traild config set EURUSD regular.stage1_lock=9.5 regular.stage1_trigger=22
  traild config set DEFAULT scalp.regimes.trending.stage2_trigger=18 --by alice
  traild config set trailing dynamic_trailing_pairs=EURUSD,GBPUSD""",
    ),
    "unset": (
        "remove overrides (the file's value applies again)",
        "Remove database overrides of a pair: the file's value applies again. An unknown key "
        "is an error (exit 2) naming the close match.",
        """examples:
  traild config unset EURUSD regular.stage1_lock
  traild config unset trailing dynamic_trailing_pairs""",
    ),
    "show": (
        "effective values and where each came from",
        "Without PAIR: the rollout keys and every database override. With PAIR: its regular "
        "and scalp stages, each with its source (default, file, environment, database).",
        """examples:
  traild config show
  traild config show EURUSD --json""",
    ),
}


def _action(actions: Any, name: str) -> argparse.ArgumentParser:
    """An action's parser (``_DOCS``) whose help ends with examples, printed as written."""
    help, description, examples = _DOCS[name]
    parser: argparse.ArgumentParser = actions.add_parser(
        name,
        help=help,
        description=description,
        epilog=examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def _common(p: argparse.ArgumentParser, by: bool = False, json_: bool = False) -> None:
    p.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
    if by:
        p.add_argument(
            "--by",
            type=who,
            metavar="WHO",
            help=f"who made the change, at most {WHO_MAX} characters (default: the OS user)",
        )
    if json_:
        p.add_argument("--json", action="store_true", help="print JSON")


# -- set / unset -----------------------------------------------------------------------------
def _set(args: argparse.Namespace) -> int:
    scope = canonical_scope(args.pair)
    changes = dict(
        ((scope, key), value)
        for key, value in (parse_assignment(scope, a) for a in args.assignments)
    )
    return _change(args, changes)


def _unset(args: argparse.Namespace) -> int:
    scope = canonical_scope(args.pair)
    for key in args.keys:
        check_key(scope, key)
    return _change(args, {(scope, key): None for key in args.keys})


def _change(args: argparse.Namespace, changes: dict[tuple[str, str], Any]) -> int:
    """Validate the overrides as they would be after ``changes``; write them only if valid."""
    base = load(args.config)
    who, now = who_am_i(args.by), datetime.now(UTC)

    async def write(store: Any) -> tuple[list[ConfigChange], Settings]:
        version, current = await store.config_overrides()
        proposed = {(o.scope, o.key): o for o in current}
        _check_unsets(changes, proposed)
        for (s, key), value in changes.items():
            if value is None:
                proposed.pop((s, key), None)
            else:
                proposed[(s, key)] = ConfigOverride(s, key, value)
        try:
            after = apply_overrides(base, proposed.values())
        except ConfigError as exc:
            raise ConfigError(exc.problems, "the change (nothing written)") from None
        written: list[ConfigChange] = await store.apply_changes(changes, who, now, version)
        return written, after

    written, after = run_on_config_store(base, write)
    if not written:
        print("no change: every value is already as requested (an unset key had no override)")
    for change in written:
        effective = _effective_value(after, change.scope, change.key)
        print(
            f"#{change.id} {change.path}: {_fmt(change.old)} -> {_fmt(change.new)}"
            f" (effective {_fmt(effective)}) by {change.changed_by}"
        )
    if any(c.scope == TRAILING_SCOPE and c.new == [] for c in written):
        print("dynamic_trailing_pairs is empty: every pair not forced fixed may trail dynamically")
    if written:
        print("the running daemon applies it within one poll interval (config.reloaded)")
    return 0


def _check_unsets(
    changes: dict[tuple[str, str], Any], current: dict[tuple[str, str], ConfigOverride]
) -> None:
    """An unset of a key the database does not override under this pair, while it does under
    another spelling of the pair (``EURUSD`` / ``CS.D.EURUSD.MINI.IP``), would leave that
    override in force without a word: refuse it and name the stored one."""
    for scope, key in changes:
        if changes[(scope, key)] is not None or (scope, key) in current:
            continue
        pair = _symbol(scope)
        elsewhere = sorted(
            o.path
            for (s, k), o in current.items()
            if k == key and s != scope and pair is not None and _symbol(s) == pair
        )
        if elsewhere:
            raise UsageError(
                f"{key_path(scope, key)} is not overridden in the database; "
                f"{', '.join(elsewhere)} is: unset that pair's key (traild config show lists them)"
            )


def _symbol(scope: str) -> str | None:
    try:
        return symbol_of(scope)
    except InstrumentError:  # DEFAULT, trailing
        return None


def _effective_value(settings: Settings, scope: str, key: str) -> Any:
    if scope == TRAILING_SCOPE:
        return getattr(settings.trailing, key)
    if scope == DAEMON_SCOPE:
        return getattr(settings.daemon, key)
    kind, _, field = key.partition(".")
    if kind in KINDS and field in StageConfig.field_names():
        try:
            return getattr(settings.stage_config(scope, kind == "scalp"), field)
        except InstrumentError:
            return None
    return None


def _fmt(value: Any) -> str:
    return "unset" if value is None else json.dumps(value)


# -- show ------------------------------------------------------------------------------------
def _show(args: argparse.Namespace) -> int:
    eff = read_effective(args.config)
    sources = value_sources(args.config, environ(), eff.overrides, eff.settings)
    if args.pair is None:
        out = _show_all(eff, sources)
    else:
        out = pair_view(eff.settings, canonical_scope(args.pair), sources)
    if args.json:
        print(json.dumps(out))
    elif args.pair is None:
        _print_all(out)
    else:
        _print_pair(out)
    return 0


def _show_all(eff: Effective, sources: dict[str, tuple[Any, str]]) -> dict[str, Any]:
    rollout = {}
    for key in ("enable_dynamic_trailing", "force_fixed_trailing_pairs", *TRAILING_KEYS):
        value, source = sources[f"trailing.{key}"]
        rollout[key] = {"value": value, "source": source}
    return {
        "version": eff.version,
        "rollout": rollout,
        "overrides": [
            {
                "key": o.path,
                "value": o.value,
                "updated_by": o.updated_by,
                "updated_at": o.updated_at.isoformat() if o.updated_at else None,
            }
            for o in eff.overrides
        ],
    }


def _print_all(out: dict[str, Any]) -> None:
    print(f"configuration version {out['version']}")
    for key, item in out["rollout"].items():
        print(f"  trailing.{key:<28} {json.dumps(item['value']):<30} ({item['source']})")
    if not out["overrides"]:
        print("no overrides in the database (the file's values apply)")
        return
    print(f"\n{'database override':<50} {'value':<20} by / at")
    for o in out["overrides"]:
        print(f"{o['key']:<50} {json.dumps(o['value']):<20} {o['updated_by']} {o['updated_at']}")


def _print_pair(out: dict[str, Any]) -> None:
    r = out["rollout"]
    print(
        f"{out['pair']}: rollout stage {r['stage']}"
        + (f" ({r['fixed_reason']})" if r["fixed_reason"] else "")
    )
    for kind in KINDS:
        print(f"{out['pair']} {kind}:")
        for name, item in out[kind].items():
            print(f"  {name:<22} {item['value']:>8g}  {item['key']} ({item['source']})")


# -- history ---------------------------------------------------------------------------------
def _history(args: argparse.Namespace) -> int:
    settings = load(args.config)
    scope = canonical_scope(args.pair) if args.pair else None

    async def read(store: Any) -> list[ConfigChange]:
        rows: list[ConfigChange] = await store.config_history(scope, args.limit)
        return rows

    rows = run_on_config_store(settings, read)
    entries = [
        {
            "id": c.id,
            "changed_at": c.changed_at.isoformat(),
            "changed_by": c.changed_by,
            "key": c.path,
            "old": c.old,
            "new": c.new,
        }
        for c in rows
    ]
    if args.json:
        print(json.dumps(entries))
        return 0
    if not entries:
        print("no configuration changes recorded")
    for e in entries:
        print(
            f"#{e['id']} {e['changed_at']} {e['changed_by']}: {e['key']}"
            f" {_fmt(e['old'])} -> {_fmt(e['new'])}"
        )
    return 0
