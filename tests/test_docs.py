"""The user documentation holds together: README.md and docs/*.md.

Every relative link (and image) points to a file of the repository, and every
`#anchor` to a heading of the linked Markdown file (GitHub's heading ids).
The README's first bash block is the two commands CI reads (`.ci/run` runs
its second line). No internal issue numbers in user documentation.
"""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def _prose_lines(text: str) -> list[str]:
  """The lines of a Markdown text outside fenced code blocks."""
  lines, fenced = [], False
  for line in text.splitlines():
    if line.lstrip().startswith("```"):
      fenced = not fenced
    elif not fenced:
      lines.append(line)
  return lines


def _anchor(heading: str) -> str:
  """GitHub's id of a heading: lower case, punctuation dropped, spaces as '-'."""
  text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
  text = re.sub(r"[^\w\- ]", "", text.strip().lower())
  return text.replace(" ", "-")


def _anchors(page: pathlib.Path) -> set[str]:
  anchors, seen = set(), {}
  for line in _prose_lines(page.read_text()):
    match = HEADING.match(line)
    if match:
      anchor = _anchor(match.group(2))
      count = seen.get(anchor, 0)
      seen[anchor] = count + 1
      anchors.add(anchor if count == 0 else f"{anchor}-{count}")
  return anchors


def _links(page: pathlib.Path) -> list[str]:
  return [target for line in _prose_lines(page.read_text()) for target in LINK.findall(line)
          if not re.match(r"[a-z]+:", target)]


def test_the_pages_exist():
  names = {page.name for page in PAGES}
  assert {"README.md", "datasets.md", "weights.md", "reproducing.md", "results.md",
          "own_scenes.md", "export.md", "distributed.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_relative_links_resolve(page):
  broken = []
  for target in _links(page):
    path, _, anchor = target.partition("#")
    linked = (page.parent / path).resolve() if path else page
    if ROOT not in [linked, *linked.parents] or not linked.exists():
      broken.append(f"{target}: no such file")
    elif anchor and (linked.suffix != ".md" or anchor not in _anchors(linked)):
      broken.append(f"{target}: no heading with this anchor in {linked.relative_to(ROOT)}")
  assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_readme_links_every_page():
  linked = {(ROOT / target.partition("#")[0]).resolve() for target in _links(ROOT / "README.md")}
  assert set(PAGES[1:]) <= linked


def test_readme_first_bash_block_is_the_two_commands():
  text = (ROOT / "README.md").read_text()
  match = re.search(r"^```bash\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
  assert match, "README.md has no bash block"
  commands = [line for line in match.group(1).splitlines() if line.strip()]
  assert len(commands) == 2, commands
  demo, tests = commands
  assert " && python train.py --config=configs/demo_pose.py" in demo
  # What .ci/run requires of the second line: '<install> && python -m pytest ...'.
  assert " && python -m pytest" in tests
  assert not any(command.rstrip().endswith("\\") for command in commands)


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_no_issue_numbers(page):
  found = re.findall(r"\bissues? #?\d+", page.read_text(), re.IGNORECASE)
  assert not found, f"{page.relative_to(ROOT)}: {found}"
