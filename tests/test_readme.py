"""The README's command table names every option of every command (``--config`` is described
once, below the table, for all of them)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

from traild.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"


def _options(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, str]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, f"{path} {name}")
        elif action.option_strings and action.option_strings[0] not in ("-h", "--version"):
            yield path, max(action.option_strings, key=len)


def _table_rows() -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index("| command | does |")
    return [line for line in text[start:].split("\n\n", 1)[0].splitlines()[2:]]


def test_the_command_table_lists_every_option() -> None:
    rows = _table_rows()
    missing = []
    for command, option in _options(build_parser(), "traild"):
        if option == "--config":
            continue  # one sentence under the table covers every command
        mine = [r for r in rows if f"`{command} " in r or f"`{command}`" in r]
        if not any(option in r for r in mine):
            missing.append(f"{command} {option}")
    assert missing == []
