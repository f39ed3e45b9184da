"""The inlined field checks of job rows (`checked_jobs`, the hot path of an import) accept and
refuse exactly what `checked(rows, check_job, …)` does, with the same reasons and values."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from infra_costs.imports.checks import check_job, checked, checked_jobs
from infra_costs.imports.results import ImportResult

# Per column: values that pass and values that fail a check (each at its edge).
VARIANTS = (
    ("run-1", "x" * 128, "", "x" * 129, "id with spaces"),
    ("model-a", "m" * 100, "", "m" * 101, "not a slug", "modèle"),
    ("node-1", "n" * 128, "", "n" * 129),
    (
        "2026-01-01T06:00:00+00:00",
        "2026-01-01T07:00:00+02:00",
        "2026-01-01T06:05:00.5+00:00",
        "2026-01-01T06:00:00",  # no offset
        "yesterday",
        "",
    ),
    (
        "2026-01-01T06:05:00.5+00:00",
        "2026-01-01T06:00:00+00:00",  # equals a start
        "2026-01-01T05:00:00+00:00",  # before
        "2026-01-01T06:05:00",
        "2026-13-01T00:00:00+00:00",
    ),
    ("succeeded", "failed", "cancelled", "running", "SUCCEEDED", ""),
)


def _both(rows):
    old, new = ImportResult("jobs"), ImportResult("jobs")
    return (list(checked(rows, check_job, old)), old.errors), (
        list(checked_jobs(rows, new)),
        new.errors,
    )


def test_same_rows_and_reasons_on_every_combination():
    rows = [
        (line, values, None) for line, values in enumerate(itertools.product(*VARIANTS), start=2)
    ]
    rows.append((len(rows) + 2, None, ["expected 6 fields, got 2"]))
    (old_rows, old_errors), (new_rows, new_errors) = _both(rows)
    assert new_rows == old_rows
    assert new_errors == old_errors
    assert old_rows and old_errors  # both kinds present
    assert new_rows[0][:4] == (2, "run-1", "model-a", "node-1")


_text = st.text(alphabet=st.sampled_from("ab-_ +:.T0123456789Zé"), max_size=12)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(*[st.one_of(st.sampled_from(v), _text) for v in VARIANTS]), max_size=8))
def test_same_rows_and_reasons_property(values):
    rows = [(line, v, None) for line, v in enumerate(values, start=2)]
    (old_rows, old_errors), (new_rows, new_errors) = _both(rows)
    assert new_rows == old_rows
    assert new_errors == old_errors
