"""Steps the browser tests share."""

from __future__ import annotations


def log_in(page, base: str, email: str, password: str, *, landing: str | None = None) -> None:
    """Log in through the form; wait for `landing` (a URL) or for the next page to load."""
    page.goto(f"{base}/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("main").get_by_role("button", name="Log in").click()
    if landing is None:
        page.wait_for_load_state()
    else:
        page.wait_for_url(landing)
