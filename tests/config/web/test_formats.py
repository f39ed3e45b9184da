"""Number formats of the web UI (config/web/formats.py) and the template filters built on them."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from django.template import Context, Template

from config.web.formats import format_credits, format_percent, format_usd


@pytest.mark.parametrize(
    "value, kwargs, shown",
    [
        (D("1234.500"), {}, "1,234.5"),
        (D("1234.500"), {"exact": True}, "1,234.500"),
        (D("-12.5"), {"exact": True, "signed": True}, "−12.500"),
        (D("12.5"), {"signed": True}, "+12.5"),
        (D("0"), {"signed": True}, "0"),
        (D("0.001"), {}, "0.001"),
        (D("999999999999999.999"), {}, "999,999,999,999,999.999"),
        (None, {}, ""),
        (None, {"empty": "—"}, "—"),
        ("junk", {}, "junk"),
    ],
)
def test_format_credits_is_exact(value, kwargs, shown):
    assert format_credits(value, **kwargs) == shown


def test_format_usd_and_percent():
    assert format_usd(D("1234.5")) == "$1,234.50"
    assert format_usd("-3") == "−$3.00"
    assert format_usd(D("1.2345678"), places=6) == "$1.234568"
    assert format_usd(None) == "" and format_usd("", empty="—") == "—"
    assert format_percent(D("0.949074")) == "94.9%"
    assert format_percent(D("-0.5"), places=0) == "−50%"
    assert format_percent(None, empty="—") == "—"


def _render(source: str, **context) -> str:
    return Template(source).render(Context(context))


def test_every_library_shows_the_same_numbers():
    value = D("-1234.5")
    assert _render("{% load credits_ui %}{{ v|credits }}", v=value) == "−1,234.5"
    assert _render("{% load staff_ui %}{{ v|credits_plain }}", v=value) == "−1,234.5"
    assert _render("{% load billing_ui %}{{ v|usd }}", v=value) == "−$1,234.50"
    assert _render("{% load staff_ui %}{{ v|usd }}", v=value) == "−$1,234.50"


def test_staff_filters_show_a_dash_for_missing_values():
    out = _render(
        "{% load staff_ui %}{{ v|usd }} {{ v|pct }} {{ v|credits_plain }} {{ v|signed_credits }}",
        v=None,
    )
    assert out == "— — — —"
    assert _render("{% load staff_ui %}{{ v|signed_credits }}", v=D(0)) == "±0"
    assert _render("{% load billing_ui %}[{{ v|usd }}]", v=None) == "[]"
