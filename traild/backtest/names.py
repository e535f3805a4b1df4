"""The backtest's variant names, without the modules that run them: ``traild backtest``'s
parser fills its help text from here and imports neither NumPy nor the settings."""

from __future__ import annotations

FIXED, FIXED_LOCK, DYNAMIC_LOCK = "fixed", "fixed+lock", "dynamic+lock"
DEFAULT_VARIANTS = f"{FIXED},{FIXED_LOCK},{DYNAMIC_LOCK}"
