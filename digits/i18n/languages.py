"""The languages the service speaks, and which one a request reads: the cookie the page's switch sets, else the
best of the browser's Accept-Language, else English.

English is the language the messages are written in; every other is a catalog in locales/, translated in its
.po and compiled to .mo at build time (`make catalogs`, which make run and test do, as the container build does).
"""

import gettext
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated

from babel import Locale
from babel.numbers import parse_pattern
from babel.support import Translations
from fastapi import Depends, Request
from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.types import Scope
from werkzeug.datastructures import LanguageAccept
from werkzeug.http import parse_accept_header

from digits.i18n.message import SOURCE, Message

LOCALES = Path(__file__).resolve().parent / "locales"
DOMAIN = "messages"
COOKIE = "lang"  # the switch's choice, which outranks Accept-Language
# Browsers send well under 100 characters; past this, the header is read no further.
MAX_ACCEPT_LANGUAGE = 256
# Every language with a catalog, English first: the folders say which, not a list kept here.
CODES = (str(SOURCE), *sorted(po.parent.parent.name for po in LOCALES.glob(f"*/LC_MESSAGES/{DOMAIN}.po")))


@dataclass(frozen=True)
class Language:
    code: str
    translations: gettext.NullTranslations
    locale: Locale

    @property
    def name(self) -> str:
        """The language's name in itself, as a switch offers it: English, Русский."""
        own = self.locale.get_display_name(self.locale) or self.code
        return own[:1].upper() + own[1:]

    def say(self, message: Message) -> str:
        """The message in this language, its numbers written as the language writes them."""
        return message.written(self.translations.gettext, self.locale)

    def percent(self, share: float, decimals: int = 1) -> str:
        """A share as a percentage with this many decimals: 99.5% in English, 99,5 % in Russian."""
        pattern = parse_pattern(self.locale.percent_formats[None].pattern)  # a new one: this changes it
        pattern.frac_prec = (decimals, decimals)
        return pattern.apply(share, self.locale)


@cache
def language(code: str) -> Language:
    """A language of CODES, its catalog read once. A catalog not yet compiled is an error that says how."""
    if code == str(SOURCE):
        return Language(code, gettext.NullTranslations(), SOURCE)
    mo = LOCALES / code / "LC_MESSAGES" / f"{DOMAIN}.mo"
    if not mo.is_file():
        raise RuntimeError(f"{mo} is missing: compile the catalogs with `make catalogs` (pybabel compile -d {LOCALES})")
    with mo.open("rb") as f:
        return Language(code, Translations(f, DOMAIN), Locale.parse(code))


def chosen(scope: Scope) -> Language:
    """The language a request reads: its cookie's choice, else the best its Accept-Language allows, else English."""
    headers = Headers(scope=scope)
    choice = cookie_parser(headers.get("cookie", "")).get(COOKIE)
    if choice in CODES:
        return language(choice)
    accepted = headers.get("accept-language", "")
    if len(accepted) > MAX_ACCEPT_LANGUAGE:
        accepted = accepted[:MAX_ACCEPT_LANGUAGE].rpartition(",")[0]  # whole entries only
    return language(parse_accept_header(accepted, LanguageAccept).best_match(CODES, default=str(SOURCE)))


def reader(request: Request) -> Language:
    return chosen(request.scope)


Reader = Annotated[Language, Depends(reader)]
