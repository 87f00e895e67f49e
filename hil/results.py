"""What a scenario run measured: one result per expectation, one per scenario. The runner
fills these; the JUnit writer and the readable summary only read them."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ExpectationResult:
    label: str  # what was expected, in words
    passed: bool
    measured: str  # the figure, in words: "after 142 ms, limit 1000 ms"
    value: float | None = None  # the figure as a number (ms or a count), for --json


@dataclass
class ScenarioResult:
    name: str
    source: str  # the scenario file
    boards: list[str] = field(default_factory=list)  # "l-0001: virtual /dev/pts/3"
    expectations: list[ExpectationResult] = field(default_factory=list)
    error: str | None = None  # the run could not be played (a board did not come up ...)
    duration_s: float = 0.0
    logs: dict[str, str] = field(default_factory=dict)  # log tails, attached on failure

    @property
    def passed(self) -> bool:
        return self.error is None and bool(self.expectations) and all(e.passed for e in self.expectations)

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "source": self.source,
            "passed": self.passed,
            "boards": self.boards,
            "error": self.error,
            "duration_s": round(self.duration_s, 2),
            "expectations": [
                {"label": e.label, "passed": e.passed, "measured": e.measured, "value": e.value}
                for e in self.expectations
            ],
        }
