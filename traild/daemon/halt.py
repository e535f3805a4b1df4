"""The global halt file, ``$STATE_DIR/HALT``: ``traild halt`` writes it, ``traild resume``
removes it, the daemon polls it (so a halt survives restarts). Its own module so that the two
commands need neither the daemon's imports nor a copy of the path."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from traild.config.settings import Settings

HALT_FILE = "HALT"


def halt_path(settings: Settings) -> Path:
    return settings.state_path() / HALT_FILE
