"""The languages: every message of the package and the templates translated in every catalog, with the same
placeholders; the compiled catalogs the same as their sources; numbers written each language's way; and the
reader's language chosen from the cookie, then Accept-Language, then English."""

import functools
import re
import tempfile
from pathlib import Path

import pytest
from babel.messages.frontend import CommandLineInterface
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from digits.i18n.languages import CODES, COOKIE, LOCALES, MAX_ACCEPT_LANGUAGE, chosen, language
from digits.i18n.message import Message
from tests.helpers import ROOT

TRANSLATED = [code for code in CODES if code != "en"]
PLACEHOLDER = re.compile(r"%\((\w+)\)s|\{(\w+)\}")


@functools.cache
def extracted() -> frozenset[str]:
    """Every message id that pybabel extract finds, run as `make messages` runs it ([tool.babel] in pyproject.toml)."""
    with tempfile.TemporaryDirectory() as tmp:
        pot = Path(tmp) / "messages.pot"
        mapping = str(ROOT / "pyproject.toml")
        CommandLineInterface().run(["pybabel", "-q", "extract", "-F", mapping, "-o", str(pot), str(ROOT)])
        with pot.open("rb") as f:
            return frozenset(m.id for m in read_po(f) if m.id and isinstance(m.id, str))


def placeholders(text: str) -> set[str]:
    return {a or b for a, b in PLACEHOLDER.findall(text)}


def catalog(code: str):
    with (LOCALES / code / "LC_MESSAGES" / "messages.po").open("rb") as f:
        return read_po(f)


def test_russian_is_spoken():
    assert "ru" in CODES  # the project's first readers


def test_the_messages_are_found_where_they_are_written():
    found = extracted()
    # One from each kind of place: an image's error, the service's own error, a template, the page's script.
    assert {
        "the file is empty; choose an image of a digit",
        "at most %(limit)s files per batch; split the upload",
        "Which digit is it?",
        "Draw a digit first.",
    } <= found
    assert len(found) > 100


@pytest.mark.parametrize("code", TRANSLATED)
def test_every_message_has_a_translation_that_keeps_its_placeholders(code):
    translations = {m.id: m for m in catalog(code) if m.id}
    missing = sorted(extracted() - translations.keys())
    assert not missing, f"no {code} translation (run make messages, then translate): {missing}"
    unfinished = [m.id for m in translations.values() if not m.string or m.fuzzy]
    assert not unfinished, f"{code}: empty or fuzzy translations: {unfinished}"
    changed = [m.id for m in translations.values() if placeholders(m.id) != placeholders(m.string)]
    assert not changed, f"{code}: translations that drop or add a placeholder: {changed}"
    assert [(m.id, errors) for m, errors in catalog(code).check()] == []  # Babel's own checks of python-format


@pytest.mark.parametrize("code", TRANSLATED)
def test_the_compiled_catalog_is_its_source(code):
    with (LOCALES / code / "LC_MESSAGES" / "messages.mo").open("rb") as f:
        compiled = {m.id: m.string for m in read_mo(f) if m.id}
    assert compiled == {m.id: m.string for m in catalog(code) if m.id}, "run make catalogs"


def test_numbers_and_shares_are_written_as_each_language_writes_them():
    over = Message("over %(limit)s bytes, not %(kinds)s", limit=10_485_760, kinds=["GET", "POST"])
    assert str(over) == "over 10,485,760 bytes, not GET or POST"
    russian = language("ru")
    assert russian.say(over) == "over 10\xa0485\xa0760 bytes, not GET или POST"  # no translation: the id itself
    assert language("en").percent(0.995) == "99.5%"
    assert russian.percent(0.995) == "99,5\xa0%"
    assert russian.percent(0.5, 0) == "50\xa0%"


def test_a_message_is_translated_with_its_parameters():
    limit = Message("at most %(limit)s files per batch; split the upload", limit=1000)
    assert language("ru").say(limit) == "в одном пакете можно не больше 1\xa0000 файлов; разделите загрузку"


def scope(**headers: str) -> dict:
    return {"type": "http", "headers": [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]}


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "en"),
        ({"accept_language": "ru-RU,ru;q=0.9,en-US;q=0.8,en;q=0.7"}, "ru"),
        ({"accept_language": "ru"}, "ru"),
        ({"accept_language": "en-GB,en;q=0.9,ru;q=0.8"}, "en"),
        ({"accept_language": "de-DE,de;q=0.9,ru;q=0.5"}, "ru"),  # no German: the next one it reads
        ({"accept_language": "ru;q=0.2,en;q=0.9"}, "en"),
        ({"accept_language": "fr, de"}, "en"),
        ({"accept_language": "*"}, "en"),
        ({"accept_language": ";;;q=,,ru;q=x"}, "en"),
        ({"accept_language": "ru", "cookie": f"{COOKIE}=en"}, "en"),  # the switch outranks the browser
        ({"accept_language": "en", "cookie": f"other=1; {COOKIE}=ru"}, "ru"),
        ({"accept_language": "ru", "cookie": f"{COOKIE}=xx"}, "ru"),  # a choice it can't honour is no choice
    ],
)
def test_the_readers_language(headers, code):
    assert chosen(scope(**headers)).code == code


def test_an_overlong_accept_language_is_read_only_so_far():
    long = ",".join(["de;q=0.9"] * 1000) + ",ru"
    assert chosen(scope(accept_language=long)).code == "en"  # ru comes after the part that is read
    assert chosen(scope(accept_language="ru," + "x" * (10 * MAX_ACCEPT_LANGUAGE))).code == "ru"
