"""MkDocs hooks for the qubert site (``hooks:`` in mkdocs.yml).

- ``cli.md``: the CLI reference, generated at build time from the typer app (the same text as
  ``qubert <command> --help``, through typer's own Markdown generator), so it cannot drift.
- ``changelog.md``: the repository's CHANGELOG.md, so the site and the file are one text.
- Every public module of ``src/qubert`` needs an API page (``docs/api/<name>.md`` holding
  ``::: qubert.<name>``); a module without one is a warning, so ``--strict`` fails.
- Links from a page to repository files outside docs/ (``../../configs/quick.yaml``) work on
  GitHub but not on the site: they become plain text there. A link whose target exists neither in
  docs/ nor in the repository is reported as a warning, which ``--strict`` turns into a failure.
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

from mkdocs.structure.files import File

log = logging.getLogger("mkdocs.hooks.qubert")
REPO = Path(__file__).resolve().parents[1]
_LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")
# Modules without an API page, and why.
NOT_IN_API = {"cli": "the CLI reference documents it", "files": "file locks and permissions, internal helpers"}


def public_modules() -> list[str]:
    """``qubert.<name>`` for every module and package directly under src/qubert that is not private."""
    root = REPO / "src" / "qubert"
    names = {p.stem for p in root.iterdir() if (p.suffix == ".py" or (p / "__init__.py").is_file()) and not p.name.startswith("_")}
    return ["qubert"] + [f"qubert.{n}" for n in sorted(names - set(NOT_IN_API))]


def documented_modules(docs_dir: Path) -> set[str]:
    """The objects the API pages render (``::: name`` lines)."""
    found = set()
    for page in (docs_dir / "api").glob("*.md"):
        found.update(re.findall(r"^:::\s+(\S+)", page.read_text(encoding="utf-8"), re.MULTILINE))
    return found


def on_files(files, config):
    documented = documented_modules(Path(config["docs_dir"]))
    for module in public_modules():
        if module not in documented:
            name = module.rpartition(".")[2]
            log.warning(f"{module} has no API page: add docs/api/{name}.md holding '::: {module}' and a nav line under 'API reference' in mkdocs.yml")
    files.append(File.generated(config, "cli.md", content=cli_reference()))
    files.append(File.generated(config, "changelog.md", content=(REPO / "CHANGELOG.md").read_text(encoding="utf-8")))
    return files


def cli_reference() -> str:
    """Markdown for every ``qubert`` command, from the typer app."""
    if str(REPO / "src") not in sys.path:
        sys.path.insert(0, str(REPO / "src"))
    import typer
    from typer.cli import MARKUP_MODE_KEY, get_docs_for_click

    from qubert.cli import app

    command = typer.main.get_command(app)
    ctx = typer.Context(command, obj={MARKUP_MODE_KEY: app.rich_markup_mode})
    body = get_docs_for_click(obj=command, ctx=ctx, name="qubert", title="CLI reference")
    note = "Generated from `qubert --help` when the site is built. Every option can also come from a YAML file (`--config`).\n\n"
    title, _, rest = body.partition("\n\n")
    return f"{title}\n\n{note}{rest.strip()}\n"


def on_page_markdown(markdown, page, config, files):
    docs_dir = Path(config["docs_dir"]).resolve()
    page_dir = (docs_dir / page.file.src_uri).parent

    def rewrite(match: re.Match) -> str:
        bang, text, target = match.groups()
        if re.match(r"^[a-z][a-z0-9+.-]*:|^#|^/", target, re.IGNORECASE):
            return match.group(0)  # external, anchor or absolute: mkdocs checks what it can
        resolved = (page_dir / target.split("#", 1)[0]).resolve()
        if resolved.is_relative_to(docs_dir):
            return match.group(0)
        if resolved.is_relative_to(REPO) and resolved.exists():
            return text if not bang else f"*{text}*"
        log.warning(f"{page.file.src_uri}: link to {target!r}: no such file in docs/ or in the repository")
        return match.group(0)

    return _LINK.sub(rewrite, markdown)
