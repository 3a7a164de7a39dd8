#!/usr/bin/env python3
"""Regenerates the generated sections of README.md from their single sources.

* ``options``: the option table of ``ossfs/config.py`` (``options_markdown()``);
* ``semantics``, ``faults``, ``durability``: ``docs/<name>.md``, headings moved one
  level down.

``python3 scripts/update_readme.py`` rewrites README.md; ``--check`` exits 1 if it is
out of date (``tests/test_readme.py`` runs that).
"""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ossfs import config  # noqa: E402


def _options() -> str:
    lines = config.options_markdown().splitlines()
    # drop the generated-file comment and the page title: README has its own heading
    body = [ln for ln in lines if not ln.startswith("<!--") and not ln.startswith("# ")]
    return "\n".join(body).strip() + "\n"


def _doc(name: str) -> str:
    """docs/<name>.md without its title, headings one level down, links made relative
    to the repository root."""
    text = (ROOT / "docs" / (name + ".md")).read_text(encoding="utf-8")
    lines = text.splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    out = []
    in_code = False
    for ln in lines:
        if ln.startswith("```"):
            in_code = not in_code
        if not in_code:
            if ln.startswith("#"):
                ln = "#" + ln
            ln = re.sub(r"\]\((?!https?:|#|/)([^)]+)\)", r"](docs/\1)", ln)
        out.append(ln)
    return "\n".join(out).strip() + "\n"


SECTIONS = {"options": _options, "semantics": lambda: _doc("semantics"), "faults": lambda: _doc("faults"),
            "durability": lambda: _doc("durability")}


def render(readme: str) -> str:
    for name, fn in SECTIONS.items():
        pattern = re.compile(r"(<!-- %s:begin[^>]*-->\n).*?(<!-- %s:end -->)" % (name, name), re.S)
        if not pattern.search(readme):
            raise SystemExit("update_readme: README.md has no %s markers" % name)
        readme = pattern.sub(lambda m: m.group(1) + fn() + m.group(2), readme)
    return readme


def main() -> int:
    path = ROOT / "README.md"
    old = path.read_text(encoding="utf-8")
    new = render(old)
    if "--check" in sys.argv[1:]:
        if new != old:
            print("README.md is out of date: run python3 scripts/update_readme.py", file=sys.stderr)
            return 1
        return 0
    path.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
