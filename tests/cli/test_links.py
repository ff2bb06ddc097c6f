"""What a newcomer reads: every relative link of the README and docs/ leads somewhere, and no
install line sends anyone to a package index where Toto is not published yet."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "SECURITY.md",
    ROOT / "toto_core" / "README.md",
    ROOT / "clients" / "js" / "README.md",
    *sorted(ROOT.glob("plugins/*/README.md")),
]
TEMPLATES = sorted(p for p in (ROOT / "toto_core" / "src" / "toto" / "templates").rglob("*") if p.is_file())
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def anchors(markdown: str) -> set[str]:
    """GitHub's ids of a page's headings: lower case, punctuation dropped, spaces as '-'."""
    found = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", FENCE.sub("", markdown), re.M):
        text = re.sub(r"[`*_\[\]()]", "", heading).strip().lower()
        found.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return found


def relative_links(path: Path) -> list[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    return [link for link in LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:", link)]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(doc: Path) -> None:
    broken = []
    for link in relative_links(doc):
        target, _, anchor = link.partition("#")
        page = (doc.parent / target).resolve() if target else doc
        if not page.exists():
            broken.append(f"{link}: no {page.relative_to(ROOT) if page.is_relative_to(ROOT) else page}")
        elif anchor and page.suffix == ".md" and anchor not in anchors(page.read_text(encoding="utf-8")):
            broken.append(f"{link}: no heading #{anchor} in {page.name}")
    assert not broken, broken


def test_the_readme_and_docs_point_to_the_protocol_in_the_repository() -> None:
    assert (ROOT / "docs" / "protocol.md").exists()
    for doc in (ROOT / "README.md", ROOT / "docs" / "compat.md"):
        text = doc.read_text(encoding="utf-8")
        assert "protocol.md" in text and "shared docs" not in text and "PROTOCOL.md" not in text, doc


#: Installing a Toto distribution by its bare name from an index where it is not published:
#: pip without --find-links (a path or a wheel folder is fine), npm by package name, a PyPI page.
DISHONEST = [
    re.compile(r"pip install (?!.*--find-links)(?:-\S+ )*['\"]?toto-[a-z]"),
    re.compile(r"npm install (?:-\S+ )*toto-client\b"),
    re.compile(r"pypi\.org/project/toto", re.I),
    re.compile(r"npmjs\.com/package/toto", re.I),
]


@pytest.mark.parametrize("path", DOCS + TEMPLATES, ids=lambda p: str(p.relative_to(ROOT)))
def test_install_lines_say_how_to_install_from_a_checkout_or_a_wheel_folder(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    wrong = [line for line in lines if any(rule.search(line) for rule in DISHONEST)]
    assert not wrong, wrong


def test_the_templates_tell_how_to_install_toto_and_pytest() -> None:
    for template in ("simple", "chat"):
        folder = ROOT / "toto_core" / "src" / "toto" / "templates" / template
        readme = (folder / "README.md").read_text(encoding="utf-8")
        assert "pip install /path/to/toto/toto_core pytest" in readme
        assert "pip install --find-links /path/to/toto/dist toto-core pytest" in readme
        assert "python -m pytest" in readme
        assert '"pytest' in (folder / "pyproject.toml").read_text(encoding="utf-8")


def test_the_servers_own_install_hints_name_a_checkout_or_a_wheel_folder() -> None:
    from toto.options import OptionError, Options
    from toto.original.options import apply_serializer_switches
    from toto.plugins import install_hint

    options = Options()
    options.define("msgpack_enabled", True, bool, "")
    options.define("bson_enabled", None, bool, "")
    with pytest.raises(OptionError) as caught:
        apply_serializer_switches(options, {})
    hints = [str(caught.value), install_hint("redis"), install_hint("application/msgpack")]
    for hint in hints:
        assert "from a Toto checkout" in hint and "--find-links" in hint, hint
        assert not any(rule.search(hint) for rule in DISHONEST[2:]), hint
