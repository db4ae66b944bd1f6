"""README and docs/: every relative link resolves, to a file and, for a Markdown file, to its heading."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown file: lower case, punctuation dropped, spaces to '-'."""
    out = set()
    for line in page.read_text().splitlines():
        if m := re.match(r"#+\s+(.*)", line):
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            out.add(slug)
    return out


def links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code blocks hold no links
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_relative_links_resolve(page):
    for target in links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        assert file.exists(), f"{page.name}: link to {target} (no {file})"
        if anchor and file.suffix == ".md":
            assert anchor in anchors(file), f"{page.name}: link to {target} (no heading #{anchor} in {file.name})"


def test_the_anchor_rule_and_the_link_finder_by_hand(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("# Where the default study's time goes\n[a](b.md#x) [c](https://e.org) ```\n[d](no.md)\n```\n")
    assert anchors(page) == {"where-the-default-studys-time-goes"}
    assert links(page) == ["b.md#x"]


def test_the_readme_is_a_front_door():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 220
    for page in ("docs/study.md", "docs/plugins.md", "docs/architecture.md", "docs/findings.md"):
        assert f"({page}" in readme, page


def test_architecture_lists_every_module_of_every_package():
    """docs/architecture.md's layer diagram names each module of each lorp package in that package's entry."""
    text = (REPO / "docs" / "architecture.md").read_text()
    diagram = text[text.index("```"):text.index("```", text.index("```") + 3)]
    entries = re.split(r"\n(?=\s*\d*\s+lorp/)", diagram)
    for package in sorted(p for p in (REPO / "lorp").iterdir() if p.is_dir() and (p / "__init__.py").exists()):
        entry = next((e for e in entries if f"lorp/{package.name}/" in e), None)
        assert entry is not None, f"lorp/{package.name}/ is missing from docs/architecture.md"
        named = set(re.findall(r"[a-z_]+", entry))
        missing = [m.stem for m in package.glob("*.py") if m.stem != "__init__" and m.stem not in named]
        assert not missing, f"docs/architecture.md's lorp/{package.name}/ entry leaves out {missing}"
