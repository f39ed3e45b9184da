"""The docs keep up with the code: every operation of the OpenAPI schema is documented in
docs/api.md, every dotted name docs/architecture.md cites exists, every page of docs/ is in the
README's documentation index, and relative links between the README and the docs lead to files
and headings that exist."""

from __future__ import annotations

import importlib
import json
import re
import unicodedata
from pathlib import Path

import pytest
from django.core.management import call_command

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
API_GUIDE = DOCS / "api.md"
README = ROOT / "README.md"
METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture(scope="module")
def schema_operations(django_db_blocker, tmp_path_factory) -> list[str]:
    out = tmp_path_factory.mktemp("schema") / "schema.json"
    with django_db_blocker.unblock():
        call_command("spectacular", "--format", "openapi-json", "--file", str(out))
    paths = json.loads(out.read_text())["paths"]
    return [
        f"{method.upper()} {path}"
        for path, operations in paths.items()
        for method in METHODS
        if method in operations
    ]


@pytest.mark.django_db
def test_every_schema_operation_is_documented_in_the_api_guide(schema_operations):
    guide = API_GUIDE.read_text()
    missing = [operation for operation in schema_operations if f"`{operation}`" not in guide]
    assert schema_operations  # the schema was read
    assert not missing, (
        "docs/api.md has no section for these operations of /api/schema/ (add a heading "
        f"such as ### `GET /api/v1/…/` with a curl example): {missing}"
    )


APPS = ("config", "accounts", "credits", "generations", "infra_costs", "operations", "planning")
DOTTED = re.compile(rf"`((?:{'|'.join(APPS)})(?:\.[A-Za-z_][A-Za-z0-9_]*)+)`")


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        try:
            for attribute in parts[cut:]:
                obj = getattr(obj, attribute)
        except AttributeError:
            return False
        return True
    return False


def test_the_architecture_page_names_modules_and_functions_that_exist():
    names = set(DOTTED.findall((DOCS / "architecture.md").read_text()))
    assert len(names) > 30  # the page names the code it describes
    missing = sorted(name for name in names if not _resolves(name))
    assert not missing, f"docs/architecture.md names what the code no longer has: {missing}"


def test_every_docs_page_is_in_the_readme_index():
    readme = README.read_text()
    index = readme.split("## Documentation", 1)
    assert len(index) == 2, "README.md has no '## Documentation' section"
    section = index[1].split("\n## ", 1)[0]
    unlisted = [
        page.name for page in sorted(DOCS.glob("*.md")) if f"(docs/{page.name})" not in section
    ]
    assert not unlisted, f"README's Documentation index does not list: {unlisted}"


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").replace("*", "")
    text = unicodedata.normalize("NFC", text.strip().lower())
    text = "".join(ch for ch in text if ch.isalnum() or ch in " -_")
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    in_code = False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
            continue
        match = None if in_code else re.match(r"#{1,6} (.+)", line)
        if match:
            slug = _slug(match.group(1))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


LINK = re.compile(r"\]\((?!https?:|mailto:|#)([^)\s]+?\.md)(?:#([^)\s]+))?\)")
SAME_PAGE_LINK = re.compile(r"\]\(#([^)\s]+)\)")


@pytest.mark.parametrize("page", [README, *sorted(DOCS.glob("*.md"))], ids=lambda page: page.name)
def test_relative_links_lead_to_existing_pages_and_headings(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    broken = []
    for target, anchor in LINK.findall(text):
        path = (page.parent / target).resolve()
        if not path.is_relative_to(ROOT):
            continue  # beside the project (../shared/SPEC.md): not in a clone of it
        if not path.is_file():
            broken.append(f"{target} (no such file)")
        elif anchor and anchor not in _anchors(path):
            broken.append(f"{target}#{anchor} (no such heading)")
    for anchor in SAME_PAGE_LINK.findall(text):
        if anchor not in _anchors(page):
            broken.append(f"#{anchor} (no such heading)")
    assert not broken, f"{page.name}: broken links: {broken}"
