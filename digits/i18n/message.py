"""A sentence for a person, kept as its English text and parameters until the reader's language is known.

The English text is the message id that Babel extracts (N_ marks it) and the catalogs translate; parameters are
filled in after translation, %-style, so that Babel checks that every translation keeps them, and numbers and
lists are written as the reader's language writes them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from babel import Locale
from babel.lists import format_list
from babel.numbers import format_decimal

SOURCE = Locale("en")  # the language of the message ids


def N_(msgid: str) -> str:  # noqa: N802 (gettext's name for it, which Babel looks for)
    """Marks a message for extraction (pybabel extract's default keyword), to be translated where it is shown."""
    return msgid


class Message:
    """A sentence in no language yet: str() is English, and languages.Language.say any other."""

    __slots__ = ("msgid", "params")

    def __init__(self, msgid: str, /, **params: Param) -> None:
        self.msgid = msgid
        self.params: Mapping[str, Param] = params

    def __str__(self) -> str:
        return self.written(str, SOURCE)

    def __repr__(self) -> str:
        return f"Message({self.msgid!r}, **{dict(self.params)!r})"

    def written(self, gettext: Callable[[str], str], locale: Locale) -> str:
        """The message translated by gettext, its parameters filled in as locale writes them."""
        text = gettext(self.msgid)
        if not self.params:
            return text
        return text % {name: _written(value, gettext, locale) for name, value in self.params.items()}


def _written(value: Param, gettext: Callable[[str], str], locale: Locale) -> str:
    if isinstance(value, Message):
        return value.written(gettext, locale)
    if isinstance(value, list):
        return format_list(value, style="or", locale=locale)
    return format_decimal(value, locale=locale) if isinstance(value, int | float) else value


# A list is alternatives, said as the language says "A, B or C"; a Message is said in the same language.
Param = str | int | float | list[str] | Message


class Said(Exception):
    """An error whose message a person reads: str() is English, and .message translates (languages.py)."""

    def __init__(self, msgid: str, /, **params: Param) -> None:
        super().__init__(msgid)
        self.message = Message(msgid, **params)

    def __str__(self) -> str:
        return str(self.message)

    def __reduce__(self) -> tuple[object, ...]:
        # Made again from the message, which its args alone don't hold: sent back whole from a process pool, and
        # copy.copy() gives it afresh, with no traceback.
        return _remade, (type(self), self.message.msgid, dict(self.message.params))


def _remade(kind: type[Said], msgid: str, params: dict[str, Param]) -> Said:
    return kind(msgid, **params)
