"""The documentation's shape: every relative link in every markdown page leads to a file or
folder that exists (and, for a link into a page, to one of its headings), the top-level
README stays a short page, and it gives the test command CI runs."""

from __future__ import annotations

import re
import shutil
import subprocess
import unicodedata
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
README_MAX_LINES = 220

FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
# [text](target "title") and ![alt](target); the text may hold one level of brackets.
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+[\"'(][^)]*)?\)")
REFERENCE_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto: ...


def markdown_files() -> list[Path]:
    """The tracked markdown files (every *.md outside hidden folders without git)."""
    if shutil.which("git") and (ROOT / ".git").exists():
        out = subprocess.run(
            ["git", "ls-files", "-z", "--", "*.md"], cwd=ROOT, capture_output=True, check=True
        ).stdout.decode()
        return sorted(ROOT / name for name in out.split("\0") if name)
    skip = {".venv", "node_modules", "build", "var"}
    return sorted(
        p
        for p in ROOT.rglob("*.md")
        if not any(part.startswith(".") or part in skip for part in p.relative_to(ROOT).parts)
    )


def prose_lines(text: str, strip_code: bool = True) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks, inline code spans removed unless
    `strip_code` is false."""
    lines, fence = [], None
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line)
        if match:
            marker = match.group(2)
            if fence is None:
                fence = marker
            elif marker[0] == fence[0] and len(marker) >= len(fence):
                fence = None
            continue
        if fence is None:
            lines.append((number, INLINE_CODE.sub("", line) if strip_code else line))
    return lines


def links(text: str) -> list[tuple[int, str]]:
    found = []
    for number, line in prose_lines(text):
        found += [(number, m.group(1)) for m in INLINE_LINK.finditer(line)]
        ref = REFERENCE_DEF.match(line)
        if ref:
            found.append((number, ref.group(1)))
    return found


def slug(heading: str) -> str:
    """The anchor a heading gets on GitHub: markup dropped, lower case, punctuation other
    than '-' and '_' removed, spaces turned into '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text stays
    text = text.replace("`", "").replace("*", "").lower()
    text = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for _, line in prose_lines(page.read_text(encoding="utf-8"), strip_code=False):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    problems = []
    for number, target in links(page.read_text(encoding="utf-8")):
        where = f"{page.relative_to(root)}:{number}: {target}"
        if not target or EXTERNAL.match(target):
            continue
        path_part, _, fragment = target.partition("#")
        path_part = unquote(path_part.split("?")[0])
        if path_part.startswith("/"):
            problems.append(f"{where}: an absolute path (use a path relative to the page)")
            continue
        dest = (page.parent / path_part).resolve() if path_part else page
        try:
            dest.relative_to(root)
        except ValueError:
            problems.append(f"{where}: leads outside the repository")
            continue
        if not dest.exists():
            problems.append(f"{where}: no such file or folder")
        elif fragment and dest.is_file() and dest.suffix == ".md" and fragment not in anchors(dest):
            problems.append(f"{where}: {dest.relative_to(root)} has no heading #{fragment}")
    return problems


def test_there_are_pages_to_check():
    names = {p.relative_to(ROOT).as_posix() for p in markdown_files()}
    assert {"README.md", "docs/PERFORMANCE.md", "bench/README.md"} <= names


@pytest.mark.parametrize("page", markdown_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page):
    assert broken_links(page) == []


def test_readme_is_a_short_page():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines (at most {README_MAX_LINES}): figures go to "
        "docs/PERFORMANCE.md, internals to the README of their package"
    )


def test_readme_gives_the_test_command_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    commands = [
        line.strip()
        for line in ci.splitlines()
        if line.strip() and not line.lstrip().startswith("#") and not line.strip().startswith(("set ", "cd "))
    ]
    assert commands, ".ci/run runs no command"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for command in commands:
        assert command in readme, f"README.md does not give the command .ci/run runs: {command}"


# The checker itself must be able to fail.


def test_checker_finds_a_missing_file_and_heading(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "A.md").write_text("# Title\n\n## The stack: `hil/stack/`\n")
    page = tmp_path / "README.md"
    page.write_text(
        "[ok](docs/A.md) [ok](docs/A.md#the-stack-hilstack) [folder](docs/) [web](https://x.y/z)\n"
        "[here](#top-part) `[code](nowhere.md)`\n"
        "```\n[fenced](nowhere.md)\n```\n"
        "# Top part\n"
        "[gone](docs/B.md) [bad heading](docs/A.md#no-such) [up](../../etc/passwd)\n"
        "[ref]: missing/ref.md\n"
    )
    problems = broken_links(page, tmp_path)
    assert [p.split(": ", 1)[1] for p in problems] == [
        "docs/B.md: no such file or folder",
        "docs/A.md#no-such: docs/A.md has no heading #no-such",
        "../../etc/passwd: leads outside the repository",
        "missing/ref.md: no such file or folder",
    ], problems


def test_slugs_follow_github():
    assert (
        slug("Contract 1: `config.json` (flash root, written by provisioning)")
        == "contract-1-configjson-flash-root-written-by-provisioning"
    )
    assert slug("City in a box and HIL scenarios") == "city-in-a-box-and-hil-scenarios"
    assert slug("Field technician: install nodes") == "field-technician-install-nodes"
