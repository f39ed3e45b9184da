"""Web UI of credits: the dashboard card, /credits/ (grants, usage chart), the ledger page
(filters, keyset pagination, htmx) and its CSV export — numbers, tenancy and bad input."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from config.web.paging import encode_cursor
from credits import ledger
from credits.models import LedgerEntry
from credits.selectors import UsageRow
from credits.views import _nice_ceiling, usage_chart
from tests.factories import account_of, make_account, make_org

pytestmark = pytest.mark.django_db

ENTRY_ID = re.compile(r'id="entry-(\d+)"')


def _login(client: Client, org) -> Client:
    client.force_login(org.memberships.get().user)
    client.get(reverse("dashboard"))  # sets the active organization
    return client


def _body(response) -> str:
    if response.streaming:
        return b"".join(response.streaming_content).decode()
    return response.content.decode()


def _text(response) -> str:
    """The page's text without tags, whitespace collapsed (for "what the user reads")."""
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", _body(response), flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def _spend(account, key, amount, *, capture=True, now=None, reason=None):
    hold = ledger.hold_create(
        account=account,
        amount=amount,
        key=key,
        now=now,
        metadata={"description": reason} if reason else None,
    )
    if capture:
        ledger.hold_capture(hold=hold, now=now + timedelta(minutes=1) if now else None)
    return hold


@pytest.fixture
def org():
    """Starter: a 500-credit plan grant expiring at the period's end, overage cap 500."""
    return make_org(name="Acme", slug="acme", plan="starter")


@pytest.fixture
def account(org):
    return account_of(org)


# --- Access -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["credits:overview", "credits:ledger", "credits:ledger_csv"])
def test_anonymous_is_sent_to_login(client, name):
    response = client.get(reverse(name))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_routes():
    assert reverse("credits:overview") == "/credits/"
    assert reverse("credits:ledger") == "/credits/ledger/"
    assert reverse("credits:ledger_csv") == "/credits/ledger.csv"


def test_nav_links_to_credits(client, org):
    _login(client, org)

    body = _body(client.get(reverse("credits:ledger")))

    assert 'href="/credits/" aria-current="page">Credits</a>' in body


# --- Card and overview --------------------------------------------------------------------------


def test_dashboard_card_shows_balance_held_available_overage_and_next_expiry(client, org, account):
    ledger.grant_create(account=account, amount="100", source="purchase", idempotency_key="p1")
    _spend(account, "job-1", "30")
    _spend(account, "job-2", "12.5", capture=False)
    plan_grant = account.grants.get(source="plan")
    plan_grant.refresh_from_db()
    _login(client, org)

    response = client.get(reverse("dashboard"))

    assert response.status_code == 200
    text = _text(response)
    # balance 500 + 100 − 30 = 570; held 12.5; available 557.5; the plan grant paid for both.
    assert "557.5 available" in text
    assert "Balance 570" in text
    assert "Held 12.5" in text
    assert "Overage used 0 / 500" in text
    expires = plan_grant.expires_at
    day = f"{expires.day} {expires:%b}" + (
        f" {expires.year}" if expires.year != timezone.now().year else ""
    )
    assert f"457.5 credits expire on {day}" in text
    assert 'href="/credits/"' in _body(response)


def test_card_in_overage_and_on_a_plan_without_overage(client):
    account = make_account(plan="starter", credits=10, slug="deep")
    _spend(account, "big-job", "25")
    _login(client, account.organization)

    text = _text(client.get(reverse("credits:overview")))

    assert "−15 available" in text
    assert "Overage used 15 / 500" in text
    assert "Billed with your next invoice" in text
    assert "None of your credits expire" in text

    free = make_org(slug="freebie", plan="free")
    other = Client()
    _login(other, free)
    text = _text(other.get(reverse("credits:overview")))
    assert "50 available" in text
    assert "No overage on this plan" in text


def test_overview_lists_live_grants_in_burn_down_order(client, org, account):
    in_a_week = timezone.now() + timedelta(days=7)
    ledger.grant_create(
        account=account,
        amount="2500",
        source="purchase",
        idempotency_key="pack",
        reference="credits-2500",
    )
    ledger.grant_create(
        account=account,
        amount="40",
        source="promo",
        idempotency_key="promo",
        reference="WELCOME40",
        expires_at=in_a_week,
    )
    spent = ledger.grant_create(
        account=account, amount="5", source="promo", idempotency_key="gone", priority=1
    )
    _spend(account, "job", "17.5")  # 5 from the priority-1 promo (now empty), 12.5 from WELCOME40
    _login(client, org)

    response = client.get(reverse("credits:overview"))

    assert response.status_code == 200
    body = _body(response)
    table = body[
        body.index('id="grants-table"') : body.index("</table>", body.index("grants-table"))
    ]
    rows = table.split("<tr>")[2:]
    assert ["WELCOME40" in rows[0], "Plan" in rows[1], "credits-2500" in rows[2]] == [True] * 3
    assert len(rows) == 3  # the emptied grant is gone
    assert spent.reference not in table or not spent.reference
    assert ">27.5</span>" in rows[0]  # remaining of 40
    assert 'data-meter-pct="68.8"' in rows[0]
    assert "never" in rows[2] and "never" not in rows[0]


def test_overview_usage_chart_counts_captured_credits_and_generations(client, org, account):
    now = timezone.now()
    yesterday = now - timedelta(days=1)
    _spend(account, "y1", "12.5", now=yesterday)
    _spend(account, "y2", "2.25", now=yesterday)
    _spend(account, "t1", "3", now=now)
    ledger.hold_release(hold=ledger.hold_create(account=account, amount="9", key="failed"))
    _spend(account, "old", "100", now=now - timedelta(days=45))  # outside the 30 days
    _login(client, org)

    response = client.get(reverse("credits:overview"))

    body = _body(response)
    svg = body[body.index("<svg") : body.index("</svg>")]
    assert 'viewBox="0 0 720 340"' in svg and 'width="100%"' in svg
    assert "<title" in svg and "<desc" in svg
    assert svg.count('class="chart-bar"') == 2  # two days with spend
    assert "17.75 credits spent over 3 generations" in svg
    numbers = body[body.index('class="chart-data"') :]
    assert (
        f'{yesterday:%a} {yesterday.day} {yesterday:%b}</time></th><td class="num">14.75' in numbers
    )
    assert '<td class="num">17.75</td><td class="num">3</td>' in numbers  # total row
    text = _text(response)
    assert "17.75 credits spent" in text


def test_overview_with_no_usage_and_no_credits(client):
    account = make_account(plan="starter", credits=0, slug="empty")
    _login(client, account.organization)

    response = client.get(reverse("credits:overview"))

    assert response.status_code == 200
    text = _text(response)
    assert "No usage in these 30 days" in text
    assert "No credits left in any grant" in text


# --- Tenancy ------------------------------------------------------------------------------------


def test_another_organizations_entries_never_appear(client, org, account):
    _spend(account, "a-job", "5", reason="alpha render")
    other = make_org(slug="bravo", plan="starter")
    b = account_of(other)
    _spend(b, "bravo-secret-job", "7", reason="bravo private prompt")
    ledger.adjust(account=b, amount="3", reason="bravo goodwill", idempotency_key="bravo-adj-key")
    _login(client, org)

    pages = [
        _body(client.get(reverse("credits:overview"))),
        _body(client.get(reverse("credits:ledger"))),
        _body(client.get(reverse("credits:ledger"), {"kind": "adjustment"})),
        _body(client.get(reverse("credits:ledger_csv"))),
        _body(client.get(reverse("dashboard"))),
    ]

    for page in pages:
        for secret in (
            "bravo-secret-job",
            "bravo private prompt",
            "bravo goodwill",
            "bravo-adj-key",
        ):
            assert secret not in page
    assert "a-job" in pages[1] and "alpha render" in pages[3]
    # Someone else's cursor shows nothing of theirs either.
    b_entry = LedgerEntry.objects.filter(account=b).order_by("-created_at", "-id").first()
    response = client.get(reverse("credits:ledger"), {"before": encode_cursor(b_entry)})
    assert "bravo" not in _body(response)


def test_a_member_of_two_organizations_sees_the_active_one(client, org, account):
    user = org.memberships.get().user
    second = make_org(slug="second", plan="starter", owner=user)
    _spend(account_of(second), "second-org-job", "4")
    _login(client, org)

    assert "second-org-job" not in _body(client.get(reverse("credits:ledger")))
    client.post(reverse("organization_switch"), {"organization": second.pk})
    assert "second-org-job" in _body(client.get(reverse("credits:ledger")))


# --- Ledger page --------------------------------------------------------------------------------


def test_ledger_shows_entries_newest_first_with_signed_amounts(client, org, account):
    t0 = timezone.now() - timedelta(hours=3)
    _spend(account, "job-cap", "12.5", now=t0, reason="sdxl 1024")
    hold = ledger.hold_create(
        account=account, amount="4.125", key="job-rel", now=t0 + timedelta(hours=1)
    )
    ledger.hold_release(hold=hold, now=t0 + timedelta(hours=2))
    _login(client, org)

    response = client.get(reverse("credits:ledger"))

    assert response.status_code == 200
    body = _body(response)
    ids = [int(i) for i in ENTRY_ID.findall(body)]
    expected = list(
        LedgerEntry.objects.filter(account=account)
        .order_by("-created_at", "-id")
        .values_list("pk", flat=True)
    )
    assert ids == expected
    rows = {e.kind: e for e in LedgerEntry.objects.filter(account=account)}

    def row_text(entry):
        start = body.index(f'id="entry-{entry.pk}"')
        return re.sub(
            r"\s+", " ", re.sub(r"<[^>]+>", " ", body[start : body.index("</tr>", start)])
        )

    # Amounts read as on every page (config.web.formats): trailing zeros trimmed.
    assert "−12.5 (held)" in row_text(LedgerEntry.objects.get(idempotency_key="hold:job-cap"))
    capture = row_text(rows["capture"])
    assert "−12.5 " in capture and "(held)" not in capture
    assert "Hold job-cap" in capture and "sdxl 1024" in capture
    release = row_text(rows["release"])
    assert "+4.125 (released)" in release
    grant = row_text(rows["grant"])
    assert "+500 " in grant and "Grant Plan" in grant and "Starter plan credits" in grant
    # balance/held after: the capture leaves 487.5 and nothing held.
    assert " 487.5 0 " in capture


def test_ledger_filters_by_kind_and_dates(client, org, account):
    jan = datetime(2024, 1, 10, 12, tzinfo=UTC)
    ledger.adjust(
        account=account, amount="5", reason="january credit", idempotency_key="jan", now=jan
    )
    ledger.adjust(
        account=account,
        amount="6",
        reason="february credit",
        idempotency_key="feb",
        now=datetime(2024, 2, 1, 0, 0, tzinfo=UTC),
    )
    ledger.adjust(
        account=account,
        amount="7",
        reason="late january credit",
        idempotency_key="jan31",
        now=datetime(2024, 1, 31, 23, 59, 59, tzinfo=UTC),
    )
    _spend(account, "job", "3")
    _login(client, org)
    url = reverse("credits:ledger")

    holds = _body(client.get(url, {"kind": "hold"}))
    assert ENTRY_ID.findall(holds) == [
        str(LedgerEntry.objects.get(account=account, kind="hold").pk)
    ]

    january = _body(client.get(url, {"date_from": "2024-01-01", "date_to": "2024-01-31"}))
    assert "january credit" in january and "late january credit" in january
    assert "february credit" not in january
    assert len(ENTRY_ID.findall(january)) == 2  # the two January grants, not the job's hold
    one_day = _body(client.get(url, {"date_from": "2024-02-01", "date_to": "2024-02-01"}))
    assert len(ENTRY_ID.findall(one_day)) == 1 and "february credit" in one_day
    since = _body(client.get(url, {"date_from": "2024-02-01", "kind": "adjustment"}))
    assert len(ENTRY_ID.findall(since)) == 1
    nothing = client.get(url, {"kind": "expiry"})
    assert nothing.status_code == 200
    assert "No entries match these filters" in _text(nothing)
    # The CSV link carries the same filters.
    assert 'href="/credits/ledger.csv?kind=hold"' in holds


@pytest.mark.parametrize(
    "params, message",
    [
        ({"date_from": "2024-13-45"}, "Enter a valid date."),
        ({"date_to": "yesterday"}, "Enter a valid date."),
        ({"date_from": "2024-02-01", "date_to": "2024-01-01"}, "“To” is before “From”."),
        ({"kind": "bogus"}, "Select a valid choice."),
        ({"date_from": "99999-01-01"}, "Enter a valid date."),
        ({"date_to": "9999-12-31"}, "Use a date between 1970-01-01 and 2999-12-31."),
        ({"date_from": "0001-01-01"}, "Use a date between 1970-01-01 and 2999-12-31."),
        ({"date_to": "9999-12-31", "date_from": "2024-01-01"}, "Use a date between"),
        ({"before": "not-a-cursor"}, "That page link is not valid"),
        ({"after": "999999999999999999.1"}, "That page link is not valid"),
        ({"before": "-5.5"}, "That page link is not valid"),
        ({"after": "123456789012345678.5"}, None),  # far future: the newest page
    ],
)
def test_ledger_bad_input_gives_a_message_not_an_error(client, org, account, params, message):
    _login(client, org)

    response = client.get(reverse("credits:ledger"), params)

    assert response.status_code == 200
    text = _text(response)
    if message is None:
        assert 'id="ledger-problems"' not in _body(response)
        assert len(ENTRY_ID.findall(_body(response))) == 1
    else:
        assert message in text
        assert 'id="ledger-problems"' in _body(response)


def test_invalid_date_is_ignored_but_valid_filters_still_apply(client, org, account):
    _spend(account, "job", "2")
    _login(client, org)

    body = _body(
        client.get(reverse("credits:ledger"), {"kind": "capture", "date_from": "not-a-date"})
    )

    assert "Enter a valid date." in body
    assert 'aria-invalid="true"' in body
    assert ENTRY_ID.findall(body) == [
        str(LedgerEntry.objects.get(account=account, kind="capture").pk)
    ]


def _walk(client, url, params, direction):
    """Follow Older → (or ← Newer) links from `url` to the end; every page's entry ids."""
    pages = []
    link = re.compile(r'<a href="([^"]+)" rel="%s"' % ("next" if direction == "older" else "prev"))
    next_url, query = url, params
    for _ in range(50):
        body = _body(client.get(next_url, query))
        pages.append([int(i) for i in ENTRY_ID.findall(body)])
        found = link.search(body)
        if not found:
            return pages, body
        next_url, query = found.group(1).replace("&amp;", "&"), None
    raise AssertionError("pagination does not end")


def test_pagination_walks_every_entry_exactly_once_both_ways(client, org, account):
    # 126 entries: the plan grant, 100 sharing one timestamp (the id breaks ties), 25 more.
    same = timezone.now() - timedelta(days=1)
    for i in range(100):
        ledger.grant_create(
            account=account, amount="1", source="promo", idempotency_key=f"tie-{i}", now=same
        )
    for i in range(25):
        ledger.grant_create(
            account=account, amount="2", source="purchase", idempotency_key=f"later-{i}"
        )
    expected = list(
        LedgerEntry.objects.filter(account=account)
        .order_by("-created_at", "-id")
        .values_list("pk", flat=True)
    )
    assert len(expected) == 126
    _login(client, org)

    pages, last = _walk(client, reverse("credits:ledger"), None, "older")

    assert [len(p) for p in pages] == [50, 50, 26]
    walked = [pk for page in pages for pk in page]
    assert walked == expected
    assert 'rel="prev"' in last

    # Back again, newest-ward from the last page.
    back_url = re.search(r'<a href="([^"]+)" rel="prev"', last).group(1).replace("&amp;", "&")
    back, first = _walk(client, back_url, None, "newer")
    assert [pk for page in reversed(back) for pk in page] == expected[:100]
    assert 'rel="prev"' not in first


def test_pagination_keeps_the_filters(client, org, account):
    for i in range(60):
        ledger.grant_create(account=account, amount="1", source="promo", idempotency_key=f"p-{i}")
    _spend(account, "job", "1")
    _login(client, org)

    pages, _ = _walk(client, reverse("credits:ledger"), {"kind": "grant"}, "older")

    walked = [pk for page in pages for pk in page]
    assert len(walked) == 61 and len(set(walked)) == 61
    assert set(LedgerEntry.objects.filter(pk__in=walked).values_list("kind", flat=True)) == {
        "grant"
    }


def test_htmx_gets_the_panel_only_and_history_restores_get_the_page(client, org, account):
    _login(client, org)
    url = reverse("credits:ledger")

    partial = client.get(url, {"kind": "grant"}, headers={"HX-Request": "true"})
    full = client.get(url, headers={"HX-Request": "true", "HX-History-Restore-Request": "true"})

    body = _body(partial)
    assert body.lstrip().startswith('<div id="ledger-panel"')
    assert "<html" not in body
    assert "HX-Request" in partial["Vary"]
    assert "<html" in _body(full)
    page = _body(client.get(url))
    assert 'hx-get="/credits/ledger/"' in page and 'hx-target="#ledger-panel"' in page
    assert 'method="get" action="/credits/ledger/"' in page  # works without JavaScript


# --- CSV ----------------------------------------------------------------------------------------


def _csv(response) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(_body(response))))


def test_csv_rows_equal_the_ledger_entries(client, org, account):
    ledger.grant_create(account=account, amount="0.001", source="promo", idempotency_key="tiny")
    _spend(account, "job-1", "12.345", reason='prompt, with "quotes"\nand a newline')
    hold = ledger.hold_create(account=account, amount="7", key="job-2")
    ledger.hold_capture(hold=hold, amount="2.5")
    ledger.adjust(account=account, amount="-600", reason='=HYPERLINK("x")', idempotency_key="debit")
    _login(client, org)

    response = client.get(reverse("credits:ledger_csv"))

    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"].startswith("text/csv")
    today = timezone.now().strftime("%Y-%m-%d")
    assert response["Content-Disposition"] == (
        f'attachment; filename="credits-ledger-acme-{today}.csv"'
    )
    raw = _body(response)
    assert raw.splitlines()[0] == (
        "created_at,sequence,kind,amount,balance_delta,held_delta,balance_after,held_after,"
        "grant_id,hold_key,reason"
    )
    rows = list(csv.DictReader(io.StringIO(raw)))
    entries = list(
        LedgerEntry.objects.filter(account=account)
        .select_related("hold")
        .order_by("-created_at", "-id")
    )
    assert len(rows) == len(entries)
    for row, e in zip(rows, entries, strict=True):
        assert datetime.fromisoformat(row["created_at"]) == e.created_at
        assert row["created_at"].endswith("Z")
        assert int(row["sequence"]) == e.sequence
        assert row["kind"] == e.kind
        for field in ("amount", "balance_delta", "held_delta", "balance_after", "held_after"):
            assert row[field] == f"{getattr(e, field):f}"
            assert D(row[field]) == getattr(e, field)
            assert re.fullmatch(r"-?\d+\.\d{3}", row[field]), row[field]
        assert row["grant_id"] == (str(e.grant_id) if e.grant_id else "")
        assert row["hold_key"] == (e.hold.key if e.hold_id else "")
        if e.reason.startswith("="):
            assert row["reason"] == "'" + e.reason  # not run as a spreadsheet formula
        else:
            assert row["reason"] == e.reason
    tiny = next(r for r in rows if r["amount"] == "0.001")
    assert tiny["kind"] == "grant"
    partial = [r for r in rows if r["kind"] == "release"]
    assert [r["amount"] for r in partial] == ["4.500"]
    assert sum(D(r["balance_delta"]) for r in rows) == account_of(org).balance


def test_csv_honours_the_filters_and_refuses_bad_ones(client, org, account):
    ledger.adjust(
        account=account,
        amount="5",
        reason="january",
        idempotency_key="jan",
        now=datetime(2024, 1, 10, tzinfo=UTC),
    )
    _spend(account, "job", "3")
    _login(client, org)
    url = reverse("credits:ledger_csv")

    assert [r["kind"] for r in _csv(client.get(url, {"kind": "capture"}))] == ["capture"]
    jan = _csv(client.get(url, {"date_from": "2024-01-01", "date_to": "2024-01-31"}))
    assert [r["reason"] for r in jan] == ["january"]
    bad = client.get(url, {"date_from": "2024-99-99"})
    assert bad.status_code == 400
    assert "Enter a valid date." in bad.content.decode()


def test_csv_streams_in_batches(client, org, account, monkeypatch):
    from credits import views

    original = views.keyset_iter
    monkeypatch.setattr(views, "keyset_iter", lambda qs: original(qs, batch=7))
    for i in range(20):
        ledger.grant_create(
            account=account,
            amount="1",
            source="promo",
            idempotency_key=f"b{i}",
            now=timezone.now() - timedelta(hours=1),
        )
    _login(client, org)

    rows = _csv(client.get(reverse("credits:ledger_csv")))

    expected = list(
        LedgerEntry.objects.filter(account=account)
        .order_by("-created_at", "-id")
        .values_list("sequence", flat=True)
    )
    assert [int(r["sequence"]) for r in rows] == expected


# --- Helpers ------------------------------------------------------------------------------------


def test_chart_scales_round_up_and_bars_are_proportional():
    assert [_nice_ceiling(v) for v in (0, D("0.4"), 1, 3, 7, 26, 240, D("1001"))] == [
        1,
        D("0.5"),
        1,
        5,
        10,
        50,
        250,
        2000,
    ]
    rows = [
        UsageRow(f"2024-05-{d:02d}", D(v), g, 0)
        for d, v, g in [(1, "0", 0), (2, "10", 1), (3, "20", 3), (4, "0.001", 1)]
    ]

    chart = usage_chart(rows)

    assert chart.credits_max == 20 and chart.generations_max == 6
    heights = [d.h for d in chart.days]
    plot = chart.plot_bottom - chart.plot_top
    assert heights[0] == 0 and heights[2] == plot and heights[1] == plot / 2
    assert heights[3] == 2.0  # a tiny spend stays visible
    assert all(d.y + d.h == chart.plot_bottom for d in chart.days)
    assert chart.total_credits == D("30.001") and chart.total_generations == 5
    assert chart.busiest.day.isoformat() == "2024-05-03"
    assert [d.label for d in chart.days if d.label] == ["1 May", "4 May"]


def test_query_counts_do_not_grow_with_the_data(
    client, org, account, django_assert_max_num_queries
):
    for i in range(30):
        _spend(account, f"job-{i}", "1", capture=i % 2 == 0)
    ledger.grant_create(account=account, amount="9", source="purchase", idempotency_key="extra")
    _login(client, org)

    # + the row-level-security tenant scope: savepoint, set, restore, release inside the test's
    # transaction (one query in production, where the scope is the outermost transaction)
    scope = 4
    with django_assert_max_num_queries(12 + scope):
        assert client.get(reverse("credits:ledger")).status_code == 200
    with django_assert_max_num_queries(12 + scope):
        assert client.get(reverse("credits:overview")).status_code == 200
    with django_assert_max_num_queries(12):
        _body(client.get(reverse("credits:ledger_csv")))


# --- References link to their jobs (issue 10 §4) -------------------------------------------------


def test_ledger_hold_references_link_to_the_organizations_own_jobs(
    client, org, account, settings, django_assert_max_num_queries
):
    from generations import services as generation_services
    from tests.factories import make_ai_model

    settings.GENERATIONS_SIMULATED_SPEEDUP = 0
    make_ai_model("sdxl", credits="5")
    mine, _ = generation_services.generation_submit(
        organization=org, model_slug="sdxl", params={"prompt": "a cat"}
    )
    generation_services.generation_run(job_id=mine.pk)
    other_org = make_org(slug="globex", plan="starter")
    foreign, _ = generation_services.generation_submit(
        organization=other_org, model_slug="sdxl", params={"prompt": "a dog"}
    )
    # A hold of this organization whose key names another tenant's job (no job of ours).
    _spend(account, f"job:{foreign.pk}", D(1), capture=False)
    _spend(account, "manual-hold", D(1), capture=False)
    client = _login(Client(), org)

    with django_assert_max_num_queries(20):  # the jobs come with the entries, not one by one
        response = client.get(reverse("credits:ledger"))
    body = _body(response)
    links = re.findall(r'<a href="([^"]+)" data-testid="entry-job-link"[^>]*>([^<]+)</a>', body)
    job_url = reverse("generations:job", args=[mine.pk])
    assert links == [(job_url, f"job:{mine.pk}")] * 2  # its hold and its capture
    assert f"job:{foreign.pk}" in body  # shown, but not linked
    assert reverse("generations:job", args=[foreign.pk]) not in body
    assert client.get(job_url).status_code == 200


def test_ledger_dates_and_amounts_use_the_shared_formats(client, org, account):
    from config.web.formats import format_credits, format_datetime

    at = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    _spend(account, "job-x", D("12.5"), now=at)
    response = _login(Client(), org).get(reverse("credits:ledger"))
    text = _text(response)
    assert format_datetime(at) == "4 Mar 2026, 05:06:07" and "4 Mar 2026, 05:06:07" in text
    assert format_credits(D("-12.500")) == "−12.5" and "−12.5 (held)" in text
    assert "12.500" not in text
