"""A pair's stage in the rollout plan, from the effective configuration alone (no trades, no
NumPy): ``traild config show`` prints it, ``traild rollout status`` builds on it.

* ``fixed_only``  the pair trails on fixed stages (dynamic off, forced fixed, or not in the
                  allowlist ``dynamic_trailing_pairs``)
* ``dynamic_on``  the pilot: dynamic for the one pair in the allowlist (the plan: EURUSD only)
* ``widened``     dynamic with several pairs in the allowlist, or for every pair (empty list)
"""

from __future__ import annotations

from traild.config.settings import Settings
from traild.core.calculator import in_rollout, is_forced_fixed

FIXED_ONLY, DYNAMIC_ON, WIDENED = "fixed_only", "dynamic_on", "widened"


def pair_stage(settings: Settings, epic: str) -> tuple[str, str | None]:
    """The pair's stage and, for ``fixed_only``, the reason (as the calculator names it)."""
    params = settings.calculator_params()
    if not params.enable_dynamic_trailing:
        return FIXED_ONLY, "disabled"
    if is_forced_fixed(epic, params.force_fixed_trailing_pairs):
        return FIXED_ONLY, "forced_fixed_pair"
    if not in_rollout(epic, params.dynamic_trailing_pairs):
        return FIXED_ONLY, "not_in_rollout"
    return (DYNAMIC_ON if len(params.dynamic_trailing_pairs) == 1 else WIDENED), None
