"""Template context of the staff pages (settings.TEMPLATES: every page gets it; only
templates/staff/base_staff.html reads it, and only then is the query run)."""

from __future__ import annotations

from django.http import HttpRequest

from generations.demo import history_pending


def demo_history(request: HttpRequest) -> dict:
    # A callable: the template calls it when it reads the variable, so other pages pay nothing.
    return {"demo_history_pending": history_pending}
