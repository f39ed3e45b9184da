"""`manage.py suggest_prices [--start DATE --end DATE] [--window day|hour] [--timezone TZ]
[--format table|json] [--apply]`.

Per model: cost per generation (active and fully loaded) over the period, the price now, the
margin it leaves, and the pricing policy's suggestion (spec §3); models sold below their fully
loaded cost are flagged. `--apply` makes every suggestion that differs from the current price a
new price version (reason "suggest_prices: …", no acting user); running it again changes
nothing.
"""

from __future__ import annotations

import json
from datetime import date

from django.core.management.base import BaseCommand, CommandError

from config.errors import ServiceError
from generations import pricing
from infra_costs.periods import WINDOWS


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"Not a date (YYYY-MM-DD): {value!r}") from None


def _s(value) -> str:
    return "—" if value is None else f"{value:f}"


def _pct(value) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells):
        return "  ".join(
            c.ljust(w) if i == 0 or i == len(cells) - 1 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def _flag(row: pricing.PriceSuggestion) -> str:
    if row.below_active_cost:
        return "BELOW COST (even active)"
    if row.below_cost:
        return "BELOW COST"
    if row.below_target_margin:
        return "below target margin"
    if row.ai_model is None:
        return "not in catalog"
    if row.suggested_credits is None:
        return "no generations"
    return ""


class Command(BaseCommand):
    help = (
        "Suggested credit prices from unit costs (spec §3): per model, cost per generation "
        "(active and fully loaded), current price, margin at the current price, the pricing "
        "policy's suggestion, and a flag for models priced below cost. --apply makes each "
        "suggestion that differs a new price version (idempotent). Default period: the last "
        f"{pricing.DEFAULT_DAYS} days."
    )

    def add_arguments(self, parser):
        parser.add_argument("--start", metavar="DATE", help="First day (YYYY-MM-DD).")
        parser.add_argument("--end", metavar="DATE", help="Day after the last one (exclusive).")
        parser.add_argument("--window", choices=WINDOWS, default="day")
        parser.add_argument("--timezone", default="UTC", help="IANA time zone (default UTC).")
        parser.add_argument("--format", choices=("table", "json"), default="table")
        parser.add_argument(
            "--apply",
            action="store_true",
            help="Apply every suggestion that differs from the current price.",
        )

    def handle(self, *args, **options):
        default_start, default_end = pricing.default_period()
        start = _date(options["start"]) if options["start"] else None
        end = _date(options["end"]) if options["end"] else None
        if start is None and end is None:
            start, end = default_start, default_end
        elif start is None:
            start = end - (default_end - default_start)
        elif end is None:
            end = start + (default_end - default_start)
        try:
            suggestions = pricing.prices_suggest(
                start, end, window=options["window"], timezone=options["timezone"]
            )
        except ServiceError as exc:
            raise CommandError(exc.detail) from None

        applied = []
        if options["apply"]:
            for row in suggestions.applicable:
                previous = row.current_credits
                rate = pricing.price_apply(
                    model=row.ai_model,
                    actor=None,
                    reason=pricing.default_reason(row, suggestions, prefix="suggest_prices: "),
                    suggestions=suggestions,
                )
                if rate is not None:
                    applied.append(
                        {
                            "model": row.model,
                            "credits": f"{rate.credits:f}",
                            "previous_credits": _s(previous) if previous is not None else None,
                            "effective_from": rate.effective_from.isoformat(),
                            "reason": rate.reason,
                        }
                    )

        if options["format"] == "json":
            data = suggestions.as_dict()
            if options["apply"]:
                data["applied"] = applied
            self.stdout.write(json.dumps(data, indent=2))
            return
        self.stdout.write("\n".join(self._render(suggestions, applied, options["apply"])))

    def _render(self, suggestions: pricing.PriceSuggestions, applied: list, apply: bool):
        p = suggestions.report["period"]
        policy = suggestions.policy
        lines = [
            f"Suggested prices from unit costs {p['start']} → {p['end']} ({p['timezone']}, "
            f"{p['window']} windows)",
            f"Policy: 1 credit = {policy.credit_value_usd.normalize():f} USD, target margin "
            f"{_pct(policy.target_margin)}, min {policy.min_credits.normalize():f} credits, "
            f"step {policy.step.normalize():f}",
            "",
        ]
        rows = [
            [
                r.model,
                str(r.generations),
                _s(r.active_cost_per_generation_usd),
                _s(r.cost_per_generation_usd),
                _s(r.current_credits),
                _s(r.current_price_usd),
                _pct(r.margin_at_current_price),
                _s(r.suggested_credits),
                _pct(r.margin_at_suggested_price),
                _flag(r),
            ]
            for r in suggestions.rows
        ]
        lines += _table(
            [
                "model",
                "gens",
                "$/gen active",
                "$/gen fully loaded",
                "price (credits)",
                "price $",
                "margin",
                "suggested",
                "margin then",
                "flag",
            ],
            rows,
        )
        below = suggestions.below_cost
        lines.append("")
        if below:
            lines.append(
                f"! {len(below)} model(s) priced below their fully loaded cost: "
                + ", ".join(r.model for r in below)
            )
        if apply:
            if applied:
                lines += [
                    f"Applied {a['model']}: {a['credits']} credits"
                    f" (was {a['previous_credits'] or '—'})"
                    for a in applied
                ]
            else:
                lines.append("Nothing to apply: every price is at its suggestion.")
        elif suggestions.applicable:
            lines.append(
                f"{len(suggestions.applicable)} price(s) differ from their suggestion; "
                "run with --apply to apply them."
            )
        return lines
