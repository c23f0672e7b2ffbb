"""The documentation site's sources: nav, API pages, CLI reference, CITATION.cff (the build itself runs in .ci/run)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
GENERATED = {"cli.md", "changelog.md"}  # written by tools/mkdocs_hooks.py at build time


def _hooks():
    spec = importlib.util.spec_from_file_location("mkdocs_hooks", REPO / "tools" / "mkdocs_hooks.py")
    module = importlib.util.module_from_spec(spec)
    pytest.importorskip("mkdocs")
    spec.loader.exec_module(module)
    return module


def _nav_files(entries):
    for entry in entries:
        for value in entry.values() if isinstance(entry, dict) else [entry]:
            if isinstance(value, list):
                yield from _nav_files(value)
            else:
                yield value


def test_every_nav_page_exists():
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    pages = list(_nav_files(config["nav"]))
    assert "quickstart.md" in pages and "api/sklearn.md" in pages
    missing = [p for p in pages if p not in GENERATED and not (REPO / "docs" / p).is_file()]
    assert missing == []


def test_every_public_module_has_an_api_page():
    hooks = _hooks()
    modules = hooks.public_modules()
    assert {"qubert", "qubert.heads", "qubert.quantum", "qubert.training", "qubert.bench", "qubert.sklearn"} <= set(modules)
    assert set(modules) - hooks.documented_modules(REPO / "docs") == set()


def test_cli_reference_lists_every_command():
    hooks = _hooks()
    text = hooks.cli_reference()
    for command in ("train", "eval", "predict", "datasets", "bench", "circuit draw", "circuit export"):
        assert f"## `qubert {command}`" in text
    assert "--report-to" in text


def test_links_outside_docs_become_text_and_broken_ones_warn(caplog):
    hooks = _hooks()

    class Page:
        class file:
            src_uri = "results/README.md"

    markdown = "see [`configs/quick.yaml`](../../configs/quick.yaml), [ok](quick/summary.md) and [gone](../../configs/none.yaml)"
    with caplog.at_level("WARNING"):
        out = hooks.on_page_markdown(markdown, Page, {"docs_dir": str(REPO / "docs")}, None)
    assert "see `configs/quick.yaml`, [ok](quick/summary.md) and [gone](../../configs/none.yaml)" == out
    assert "configs/none.yaml" in caplog.text


def test_citation_file_has_the_required_fields():
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0"
    assert {"authors", "message", "title"} <= set(citation)
    paper = citation["references"][0]
    assert paper["type"] == "article" and "2511.17677" in paper["url"]
    assert [a["family-names"] for a in paper["authors"]] == ["Masum", "Mahmud", "Najafi", "Aygun"]


_LIST_ITEM = __import__("re").compile(r"^(\s*)([-*+]|\d+\.)\s+\S")


def _source_list_items(text: str) -> tuple[int, int]:
    """(bullet items, numbered items) written in a Markdown source, outside fenced code."""
    bullets = numbered = 0
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        match = None if fenced else _LIST_ITEM.match(line)
        if match:
            if match.group(2)[0].isdigit():
                numbered += 1
            else:
                bullets += 1
    return bullets, numbered


def _rendered_list_items(html: str) -> tuple[int, int]:
    """(items of <ul> lists, items of <ol> lists) in rendered HTML."""
    from html.parser import HTMLParser

    class Lists(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.stack: list[str] = []
            self.counts = {"ul": 0, "ol": 0}

        def handle_starttag(self, tag, attrs):
            if tag in ("ul", "ol"):
                self.stack.append(tag)
            elif tag == "li" and self.stack:
                self.counts[self.stack[-1]] += 1

        def handle_endtag(self, tag):
            if tag in ("ul", "ol") and self.stack:
                self.stack.pop()

    parser = Lists()
    parser.feed(html)
    return parser.counts["ul"], parser.counts["ol"]


@pytest.mark.parametrize("page", sorted(str(p.relative_to(REPO / "docs")) for p in (REPO / "docs").rglob("*.md")))
def test_every_list_renders_as_written_on_the_docs_site(page):
    """MkDocs' Markdown is stricter than GitHub's: a list needs a blank line before it (else it
    runs into the paragraph above) and a nested list needs 4 spaces of indent (else it becomes
    items of its parent, bullets turned into numbers). Rendering each page with the site's own
    Markdown extensions and counting list items catches both."""
    markdown = pytest.importorskip("markdown")
    pytest.importorskip("pymdownx")
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    extensions = [next(iter(e)) if isinstance(e, dict) else e for e in config["markdown_extensions"]]
    text = (REPO / "docs" / page).read_text(encoding="utf-8")
    html = markdown.markdown(text, extensions=extensions)
    assert _rendered_list_items(html) == _source_list_items(text), f"docs/{page}: (bullets, numbered) written vs rendered differ"
