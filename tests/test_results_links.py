"""docs/results.md traces its numbers to committed records: every link on it, and in the records'
READMEs, must lead to a file that exists, and every `#anchor` into a page to one of its headings
(as GitHub names them), including the links other pages make into docs/results.md."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
RESULTS = DOCS / "results.md"
# the pages whose links are checked in full: results.md and the records' READMEs
CHECKED = [RESULTS, *sorted((DOCS / "results").rglob("README.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation, symbols and other numbers (such as
    a superscript 2) dropped, except '-' and '_', each space a '-'."""
    kept = []
    for ch in heading.strip().lower():
        cat = unicodedata.category(ch)
        if ch in "-_ " or cat[0] in "LM" or cat in ("Nd", "Nl"):
            kept.append(ch)
    return "".join(kept).replace(" ", "-")


def outside_code(text: str) -> list[tuple[int, str]]:
    """(line number, line) of the lines outside fenced code blocks."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append((number, line))
    return lines


def anchors(page: Path) -> set[str]:
    """The anchors of a page's headings, with GitHub's -1, -2 suffixes for repeats."""
    seen: dict[str, int] = {}
    out = set()
    for _, line in outside_code(page.read_text()):
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(re.sub(r"`", "", m.group(2)))
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    return out


def problems(page: Path, root: Path = ROOT, only_into: Path | None = None) -> list[str]:
    """One line per link of `page` that leads nowhere, named relative to `root` (`only_into`:
    check only the links into that page)."""
    out = []
    for number, line in outside_code(page.read_text()):
        for target in LINK.findall(line):
            if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if only_into is not None and dest != only_into.resolve():
                continue
            where = f"{page.relative_to(root)}:{number}: {target}"
            if not dest.exists():
                out.append(f"{where}: no such file")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                out.append(f"{where}: no heading with this anchor in {dest.relative_to(root)}")
    return out


@pytest.mark.parametrize("page", CHECKED, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_links_of_results_pages_lead_to_files_and_headings(page):
    found = problems(page)
    assert not found, "\n".join(found)


def test_links_from_other_pages_into_results_md_resolve():
    others = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
    found = [p for page in others if page != RESULTS for p in problems(page, only_into=RESULTS)]
    assert not found, "\n".join(found)


def test_results_md_links_its_records():
    """The check above reads something: results.md links many record files and anchors."""
    targets = [t for _, line in outside_code(RESULTS.read_text()) for t in LINK.findall(line)]
    assert sum(t.startswith("results/") for t in targets) > 20
    assert sum("#" in t for t in targets) > 5


@pytest.mark.parametrize(
    ("heading", "expected"),
    [
        ("The fair re-run: chosen on val, reported on test (CPU, 2026-11-29 to 2026-12-07)",
         "the-fair-re-run-chosen-on-val-reported-on-test-cpu-2026-11-29-to-2026-12-07"),
        ("The description's claims: verdicts at this budget",
         "the-descriptions-claims-verdicts-at-this-budget"),
        ("Version 2: why rider scored 0 (measured on seed 0, 600 train images of 128²)",
         "version-2-why-rider-scored-0-measured-on-seed-0-600-train-images-of-128"),
        ("Speed_and memory — CPU", "speed_and-memory--cpu"),
    ],
)  # fmt: skip
def test_slug_follows_github(heading, expected):
    assert slug(heading) == expected


def test_a_broken_link_and_anchor_are_reported(tmp_path):
    page = tmp_path / "p.md"
    (tmp_path / "there.md").write_text("# A heading\n")
    page.write_text(
        "[ok](there.md#a-heading) [gone](missing.json) [bad](there.md#nope)\n"
        "```\n[in code](ignored.md)\n```\n"
    )
    assert problems(page, tmp_path) == [
        "p.md:1: missing.json: no such file",
        "p.md:1: there.md#nope: no heading with this anchor in there.md",
    ]
