"""The result of an import, and the refusal of a bad input (nothing written)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from config.errors import ValidationError

_MAX_ERRORS_IN_DETAIL = 20


@dataclass
class ImportResult:
    kind: str
    key_name: str = "line"  # "line" (CSV) or "row" (API)
    imported: int = 0
    already_present: int = 0
    errors: dict[int, list[str]] = field(default_factory=dict)
    created: dict[str, int] = field(default_factory=dict)  # e.g. {"pools": 1, "nodes": 3}
    model_slugs: set[str] = field(default_factory=set)

    @property
    def invalid(self) -> int:
        return len(self.errors)

    def error_lines(self) -> list[str]:
        return [
            f"{self.key_name} {key}: {'; '.join(reasons)}"
            for key, reasons in sorted(self.errors.items())
        ]

    def summary(self) -> str:
        extra = "".join(f", {n} new {what}" for what, n in self.created.items() if n)
        return (
            f"imported {self.imported} {rows_word(self.imported)}, {self.already_present} already "
            f"present, {self.invalid} invalid{extra}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "imported": self.imported,
            "already_present": self.already_present,
            "invalid": self.invalid,
            "errors": {str(k): v for k, v in sorted(self.errors.items())},
        }


def rows_word(n: int) -> str:
    return "row" if n == 1 else "rows"


class ImportRefused(ValidationError):
    """A bad input: nothing was written. `errors` maps each bad key (as a string) to reasons."""

    def __init__(self, result: ImportResult) -> None:
        self.result = result
        lines = result.error_lines()
        shown = "\n".join(lines[:_MAX_ERRORS_IN_DETAIL])
        more = len(lines) - _MAX_ERRORS_IN_DETAIL
        if more > 0:
            shown += f"\n… and {more} more"
        super().__init__(
            f"{result.invalid} invalid {rows_word(result.invalid)}; nothing was imported.\n{shown}",
            errors={str(k): v for k, v in sorted(result.errors.items())},
        )
