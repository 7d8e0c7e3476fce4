"""The severity words an anomaly may carry: the one owner of that vocabulary.

The detectors say which one applies; the report, the text output and the tests
rank and show them from here. There are only these three: a word the analysis
never emits has no rank (the report shows it as given, after the known ones).
"""

from __future__ import annotations

import enum


class Severity(str, enum.Enum):
    """Worst first: the members' order is the display order."""

    ERROR = "error"          # a refcount rule broken, shown by the events
    WARNING = "warning"      # suspicious: a bug or a workload doing something odd
    UNCERTAIN = "uncertain"  # the verdict's evidence spans lost events

    @property
    def rank(self) -> int:
        """Bigger is worse: ERROR 3, WARNING 2, UNCERTAIN 1 (unknown words rank 0)."""
        return len(ORDER) - ORDER.index(self)

    @property
    def label(self) -> str:
        """The word shown to people (the same as the value)."""
        return self.value

    @property
    def meaning(self) -> str:
        return MEANING[self]

    @classmethod
    def of(cls, value: object) -> Severity | None:
        """The member for a severity word ("error", " Warning "), None for anything else."""
        if isinstance(value, Severity):
            return value
        if not isinstance(value, str):
            return None
        try:
            return cls(value.strip().lower())
        except ValueError:
            return None


ORDER: tuple[Severity, ...] = tuple(Severity)

MEANING: dict[Severity, str] = {
    Severity.ERROR: "a refcount rule broken, shown by the events",
    Severity.WARNING: "suspicious: a kernel bug or a workload doing something unusual",
    Severity.UNCERTAIN: "the evidence spans lost events: the verdict may be wrong",
}


def severity_rank(value: object) -> int:
    """Sort key (bigger is worse) for a severity word; 0 for a word not in Severity."""
    s = Severity.of(value)
    return 0 if s is None else s.rank
