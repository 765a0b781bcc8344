"""The dashboard's catalogues: every key in Dutch and English, and every key the page uses."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from devices import DEVICE_KINDS

STATIC = Path(__file__).resolve().parents[2] / "dashboards" / "static"
LANGUAGES = ("nl", "en")
PLACEHOLDER = re.compile(r"\{(\w+)\}")
# t("key") and t(`key`) without a ${...} part: the keys the scripts ask for by name.
SCRIPT_KEY = re.compile(r"""\bt\(\s*["`]([A-Za-z0-9_.]+)["`]""")
# Keys the scripts build from a prefix and a code (status.online, kind.noise, ...).
DYNAMIC_PREFIX = re.compile(r"""\b(?:t|has)\(\s*`([A-Za-z0-9_]+\.)\$\{""")
ATTRIBUTE_KEY = re.compile(r'data-i18n(?:-label|-placeholder|-title)?="([^"]+)"')
# A literal in a ternary handed to t(): t(cond ? "a" : "b").
TERNARY_KEY = re.compile(r'"([a-z][A-Za-z]+\.[A-Za-z0-9_.]+)"')


def catalogue(language: str) -> dict[str, str]:
    """One language's catalogue."""
    found: dict[str, str] = json.loads((STATIC / "i18n" / f"{language}.json").read_text("utf-8"))
    return found


def scripts() -> str:
    """All of the dashboard's own scripts (the vendored libraries are not ours)."""
    return "\n".join(p.read_text("utf-8") for p in sorted(STATIC.glob("*.js")))


def pages() -> str:
    """The dashboard's HTML."""
    return "\n".join(p.read_text("utf-8") for p in sorted(STATIC.glob("*.html")))


def test_both_catalogues_have_the_same_keys_and_placeholders() -> None:
    dutch, english = catalogue("nl"), catalogue("en")
    assert set(dutch) == set(english), set(dutch) ^ set(english)
    for key, text in dutch.items():
        assert text.strip(), key
        assert set(PLACEHOLDER.findall(text)) == set(PLACEHOLDER.findall(english[key])), key


def test_every_key_the_page_and_scripts_name_is_in_the_catalogue() -> None:
    keys = set(catalogue("nl"))
    named = set(ATTRIBUTE_KEY.findall(pages())) | set(SCRIPT_KEY.findall(scripts()))
    named |= {k for k in TERNARY_KEY.findall(scripts()) if k.split(".")[0] in _prefixes(keys)}
    assert named, "the pattern found no key at all"
    assert named - keys == set()
    for prefix in set(DYNAMIC_PREFIX.findall(scripts())):
        assert any(k.startswith(prefix) for k in keys), prefix


def _prefixes(keys: set[str]) -> set[str]:
    return {k.split(".")[0] for k in keys}


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_kind_and_metric_of_the_catalogue_has_a_name(language: str) -> None:
    texts = catalogue(language)
    for kind in DEVICE_KINDS.values():
        assert f"kind.{kind.name}" in texts
        assert f"kindMark.{kind.name}" in texts  # beside its colour on the map
        for metric in kind.metrics:
            assert f"metric.{metric.name}" in texts


def test_the_page_holds_no_text_outside_the_catalogue() -> None:
    """Elements that show words carry a key; the HTML has no words of its own but the name."""
    html = pages()
    body = html[html.index("<body>") :]
    # Text between tags, minus whitespace, symbols and the product's name.
    words = [
        w.strip()
        for w in re.findall(r">([^<]+)<", body)
        if re.search(r"[A-Za-z]{2,}", w) and w.strip() != "lantaarn"
    ]
    assert words == []


def test_the_scripts_write_no_sentences_of_their_own() -> None:
    """A string literal with two words and a space is a sentence that belongs in the catalogue."""
    sentence = re.compile(r"""["`]([A-Z][a-z]+ [a-z]+[^"`]*)["`]""")
    found = [
        m.group(1)
        for path in sorted(STATIC.glob("*.js"))
        for m in sentence.finditer(path.read_text("utf-8"))
    ]
    assert found == []


@pytest.mark.parametrize("language", LANGUAGES)
def test_each_kind_has_a_mark_of_its_own(language: str) -> None:
    """The map tells kinds apart by these marks as well as by colour: no two may be alike."""
    marks = [v for k, v in catalogue(language).items() if k.startswith("kindMark.")]
    assert len(set(marks)) == len(marks) == len(DEVICE_KINDS)
