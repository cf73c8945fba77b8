"""A count of the bad inputs the property-based (hypothesis) fuzz tests tried in this run.

Each fuzz example calls ``tried("kind")`` once per bad input it feeds the program; the count is
printed at the end of the run (see ``conftest.pytest_terminal_summary``) and quoted in the
README's reliability section.

Example:
    >>> from fuzzing import tried
    >>> tried("images")
"""

from __future__ import annotations

from collections import Counter

COUNTS: Counter[str] = Counter()


def tried(kind: str, count: int = 1) -> None:
    """Record ``count`` bad inputs of ``kind`` (e.g. "images", "weights", "cli")."""
    COUNTS[kind] += count


def summary() -> str | None:
    """One line: the total and the count per kind, or None when no fuzz test ran."""
    if not COUNTS:
        return None
    kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(COUNTS.items()))
    return f"fuzz: {sum(COUNTS.values())} bad inputs tried ({kinds})"
