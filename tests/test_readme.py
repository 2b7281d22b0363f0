"""The README as a reader meets it: its ```python examples (each one
continuing the one before) run as printed, in one fresh `python -P` process on the installed fastact, and every
relative link in README.md and docs/*.md resolves: to an existing file and,
for a `#anchor` into a Markdown file, to one of its headings (GitHub's rule).
The pages are read from the source tree, found from this file's path (the
suite imports the installed package, not the checkout)."""
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]

# Backend-independent: the example runs in its own process, the links are text.
pytestmark = pytest.mark.once

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"`[^`]*`")
# [text](target) and ![alt](target), the text possibly across lines; an optional "title"
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^()\s<>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def _outside_fences(text: str):
    """The lines of `text` outside fenced code blocks."""
    fenced = False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield line


def python_blocks(text: str) -> str:
    """The bodies of the ```python blocks, in order, as one program."""
    blocks = re.findall(r"^```python[ \t]*\n(.*?)^```[ \t]*$", text, re.S | re.M)
    assert blocks, "the README has no ```python block"
    return "".join(blocks)


def github_anchor(heading: str) -> str:
    """GitHub's anchor for a heading: link syntax reduced to its text, then
    lowercase, every character but letters, digits, '_', '-' and spaces
    dropped, spaces to '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set:
    """Every heading anchor of a Markdown file (a repeated one gets -1, -2, ...)."""
    seen, result = {}, set()
    for line in _outside_fences(path.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if not match:
            continue
        anchor = github_anchor(match.group(1))
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        result.add(anchor if count == 0 else f"{anchor}-{count}")
    return result


def relative_links(path: Path) -> list:
    """The link targets of a Markdown file that point inside the repository
    (no scheme such as https: or mailto:), outside code."""
    prose = "\n".join(INLINE_CODE.sub("", line) for line in _outside_fences(path.read_text(encoding="utf-8")))
    return [t for t in LINK.findall(prose) if not SCHEME.match(t)]


def broken_links(path: Path) -> list:
    """'target: why' for each relative link of `path` that does not resolve."""
    broken = []
    for target in relative_links(path):
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / unquote(file_part)).resolve() if file_part else path
        if not resolved.exists():
            broken.append(f"{target}: no such file ({resolved})")
        elif anchor and resolved.suffix == ".md" and unquote(anchor).lower() not in anchors(resolved):
            broken.append(f"{target}: no heading with anchor #{anchor} in {resolved.name}")
    return broken


def test_readme_example_runs_as_printed(tmp_path):
    code = python_blocks(README.read_text(encoding="utf-8"))
    # as a user runs it: none of the suite's own Numba settings (conftest.py)
    env = {k: v for k, v in os.environ.items() if k not in ("FASTACT_NUMBA_TORCH_BELOW", "FASTACT_NUMBA_WARMUP")}
    run = subprocess.run([sys.executable, "-P", "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, f"the README's example failed:\n{code}\n--- stdout\n{run.stdout}\n--- stderr\n{run.stderr}"


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_relative_links_resolve(page):
    assert broken_links(page) == []


def test_pages_have_links():
    """The README links into docs/, and the docs index to every page."""
    assert any(t.startswith("docs/") for t in relative_links(README))
    index = ROOT / "docs" / "README.md"
    linked = {t.partition("#")[0] for t in relative_links(index)}
    assert {p.name for p in PAGES if p.parent == index.parent and p != index} <= linked


def test_broken_links_are_found(tmp_path):
    (tmp_path / "other.md").write_text("# Other\n\n## A `real`, heading (2)\n\n## Twice\n\n## Twice\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n"
        "[fine](other.md) [fine](other.md#a-real-heading-2) [fine](other.md#twice-1) [fine](#page)\n"
        "[across\nlines](other.md#twice) [web](https://example.com/x.md) `[code](missing.md)`\n"
        "```\n[fenced](missing.md)\n```\n"
        "[gone](missing.md) [no anchor](other.md#nope) [own](#nowhere)\n")
    assert broken_links(page) == [
        f"missing.md: no such file ({tmp_path.resolve() / 'missing.md'})",
        "other.md#nope: no heading with anchor #nope in other.md",
        "#nowhere: no heading with anchor #nowhere in page.md",
    ]
