"""The documentation's links hold: every relative link of README.md and docs/*.md names a file
that exists, and every `#anchor` names a heading of the file it points into, as GitHub makes
anchors of headings. The development guide's layout names every module and script there is."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# An inline link or image: [text](target) or ![alt](target); the text may span lines.
LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*(\S+)", re.MULTILINE)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # https:, mailto:


def prose(text: str) -> str:
    """`text` without its fenced code blocks and inline code spans, line count kept."""
    lines, fence = [], ""
    for line in text.split("\n"):
        marker = re.match(r"\s*(```+|~~~+)", line)
        if fence:
            if marker and marker.group(1).startswith(fence):
                fence = ""
            lines.append("")
        elif marker:
            fence = marker.group(1)
            lines.append("")
        else:
            lines.append(re.sub(r"(`+)(?:(?!\1).)+\1", "code", line))
    return "\n".join(lines)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: its text lowercased, punctuation but '-' and '_' dropped,
    spaces made '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of a Markdown file's headings; repeated ones get -1, -2, ... as on GitHub."""
    found: set[str] = set()
    counts: dict[str, int] = {}
    for line in prose(path.read_text(encoding="utf-8")).split("\n"):
        heading = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not heading:
            continue
        base = slug(heading.group(1))
        seen = counts.get(base, 0)
        counts[base] = seen + 1
        found.add(base if seen == 0 else f"{base}-{seen}")
    return found


def links(path: Path) -> Iterator[tuple[int, str]]:
    """(line, target) of every link in a document's prose."""
    text = prose(path.read_text(encoding="utf-8"))
    for pattern in (LINK, REFERENCE):
        for match in pattern.finditer(text):
            yield text.count("\n", 0, match.start(1)) + 1, match.group(1)


def relative_links() -> list[tuple[Path, int, str]]:
    return [
        (document, line, target)
        for document in DOCUMENTS
        for line, target in links(document)
        if not EXTERNAL.match(target)
    ]


def test_the_documents_link_to_each_other() -> None:
    assert len(DOCUMENTS) > 1
    targets = {target for _, _, target in relative_links()}
    assert "docs/operations.md" in targets  # the README lists the guides
    assert any("#" in target for target in targets)  # and anchors are checked


@pytest.mark.parametrize(
    ("document", "line", "target"),
    relative_links(),
    ids=[f"{d.relative_to(ROOT)} line {n}: {t}" for d, n, t in relative_links()],
)
def test_relative_link_points_at_what_exists(document: Path, line: int, target: str) -> None:
    where = f"{document.relative_to(ROOT)} line {line}: {target}"
    file_part, _, anchor = target.partition("#")
    linked = (document.parent / file_part).resolve() if file_part else document
    assert linked.exists(), f"{where}: no such file"
    assert linked.is_relative_to(ROOT), f"{where}: outside the repository"
    if anchor:
        assert linked.suffix == ".md", f"{where}: an anchor into a file that is not Markdown"
        assert anchor in anchors(linked), (
            f"{where}: no heading of {linked.relative_to(ROOT)} has the anchor #{anchor}"
        )


@pytest.mark.parametrize(
    ("heading", "expected"),
    [
        (
            "What a service can promise: the SLO figures",
            "what-a-service-can-promise-the-slo-figures",
        ),
        ("With `kubectl apply`", "with-kubectl-apply"),
        (
            "Several sources: traces, a service mesh, the cluster's own manifests",
            "several-sources-traces-a-service-mesh-the-clusters-own-manifests",
        ),
        ("Metrics, spans and logs", "metrics-spans-and-logs"),
        ("A snake_case word", "a-snake_case-word"),
    ],
)
def test_slugs_are_githubs(heading: str, expected: str) -> None:
    assert slug(heading) == expected


def test_repeated_headings_get_numbered_anchors(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# A\n\n```sh\n# not a heading\n```\n\n## A\n\n## B\n", encoding="utf-8")
    assert anchors(page) == {"a", "a-1", "b"}


def test_development_guide_names_every_module_and_script() -> None:
    guide = (ROOT / "docs" / "development.md").read_text(encoding="utf-8")
    package = ROOT / "operator" / "servicegraph"
    named = [p for p in package.glob("*.py") if p.name != "__init__.py"]
    named += [p for p in (ROOT / "scripts").iterdir() if p.is_file()]
    missing = [p.relative_to(ROOT).as_posix() for p in named if p.name not in guide]
    assert missing == [], "docs/development.md does not name these"
