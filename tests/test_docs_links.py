"""Every relative link of README.md and docs/ leads somewhere, and every page is reachable.

A link `[text](path#anchor)` must name a file or folder that exists, relative to the
page that holds it, and, for an anchor into a markdown page, one of that page's
headings as GitHub spells its anchors. Links inside code are not links.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]
PAGES = sorted([PROJECT / "README.md", *(PROJECT / "docs").rglob("*.md")])

# Pages that another part of the work writes. A link to one is accepted while it is
# missing; once the page exists it is checked like any other.
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.MULTILINE)


def _prose(text: str) -> str:
    """The page without its code blocks."""
    return FENCE.sub("", text)


def links(page: Path) -> list[str]:
    """The targets of the page's links, code blocks and code spans left out."""
    return LINK.findall(INLINE_CODE.sub("", _prose(page.read_text())))


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the page's headings (`## Runs: x` -> `runs-x`)."""
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(_prose(page.read_text())):
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def broken(page: Path, target: str) -> str | None:
    """Why a link's target does not lead anywhere, or None when it does."""
    path_part, _, anchor = target.partition("#")
    destination = (page.parent / path_part).resolve() if path_part else page
    if not destination.exists():
        return f"{path_part}: no such file"
    if anchor and destination.suffix == ".md" and anchor not in anchors(destination):
        return f"#{anchor}: no such heading in {os.path.relpath(destination, PROJECT)}"
    return None


def _is_relative(target: str) -> bool:
    return not re.match(r"^[a-z][a-z0-9+.-]*:", target)  # http:, https:, mailto:


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(PROJECT)))
def test_every_relative_link_leads_to_a_file_and_heading(page: Path) -> None:
    problems = [
        f"{page.relative_to(PROJECT)}: ({target}) {why}"
        for target in links(page)
        if _is_relative(target) and (why := broken(page, target))
    ]
    assert not problems, "\n".join(problems)


def test_every_page_under_docs_is_reachable_from_the_readme() -> None:
    reached, queue = set(), [PROJECT / "README.md"]
    while queue:
        page = queue.pop()
        if page in reached or not page.is_file():
            continue
        reached.add(page)
        for target in links(page):
            path_part = target.partition("#")[0]
            if _is_relative(target) and path_part.endswith(".md"):
                queue.append((page.parent / path_part).resolve())
    unreached = [str(p.relative_to(PROJECT)) for p in PAGES if p not in reached]
    assert not unreached, f"no link leads to: {unreached}"


def test_the_checker_finds_a_missing_file_and_a_missing_heading(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Runs: `servelab run`\n\n## Runs: `servelab run`\n\n```\n# not a heading\n```\n"
    )
    assert anchors(page) == {"runs-servelab-run", "runs-servelab-run-1"}
    assert broken(page, "#runs-servelab-run-1") is None
    assert broken(page, "#not-a-heading") is not None
    assert broken(page, "other.md") == "other.md: no such file"
    assert links(page) == []
    page.write_text("[a](x.md) `[b](y.md)`\n```\n[c](z.md)\n```\n")
    assert links(page) == ["x.md"]
