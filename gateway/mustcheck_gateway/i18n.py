"""Which language people read: Chinese (zh-CN) where the locale is Chinese, English otherwise.

Texts for people are written in code as English message ids and looked up in gettext catalogues
(``locale/<lang>/LC_MESSAGES/mustcheck.po``, compiled to ``.mo`` beside it by
``scripts/compile_catalogues.py``; a test fails when a ``.mo`` is stale). :func:`activate` picks the
language once per command: an explicit choice (``mustcheck --lang en|zh``) wins, else the locale
variables in gettext's order (``LANGUAGE``, ``LC_ALL``, ``LC_MESSAGES``, ``LANG``): ``zh*`` means
Chinese, anything else English. Machine-readable output (``--json``, CSV, logs) is never translated.
"""

from __future__ import annotations

import argparse
import gettext as _gettext
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

Language = Literal["zh", "en"]
LANGUAGES: tuple[Language, ...] = ("zh", "en")
DOMAIN = "mustcheck"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
LOCALE_VARIABLES = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")
# gettext's name for each language's catalogue folder.
_CATALOGUE = {"zh": "zh_CN"}

_active: _gettext.NullTranslations = _gettext.NullTranslations()
_language: Language = "en"


def language_from_environment(environ: Mapping[str, str] | None = None) -> Language:
    """``zh`` when the first locale variable that is set names Chinese, else ``en``."""
    environ = os.environ if environ is None else environ
    for name in LOCALE_VARIABLES:
        value = environ.get(name, "")
        if value:
            first = value.split(":")[0].strip().lower()
            return "zh" if first.startswith("zh") else "en"
    return "en"


def catalogue(language: Language) -> _gettext.NullTranslations:
    """The translations for ``language``; English is the message ids themselves."""
    folder = _CATALOGUE.get(language)
    if folder is None:
        return _gettext.NullTranslations()
    return _gettext.translation(DOMAIN, LOCALE_DIR, languages=[folder])


def activate(language: Language | None = None) -> Language:
    """Use ``language`` (or the locale's) for every later :func:`_`; argparse's own texts follow."""
    global _active, _language
    _language = language or language_from_environment()
    _active = catalogue(_language)
    # argparse looks its texts ("usage: ", "the following arguments are required: %s" …) up through
    # module globals bound to the gettext functions at its import; point them at the chosen catalogue.
    setattr(argparse, "_", gettext)  # noqa: B010
    setattr(argparse, "ngettext", ngettext)  # noqa: B010
    return _language


def active_language() -> Language:
    return _language


def gettext(message: str) -> str:
    return _active.gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return _active.ngettext(singular, plural, n)


def N_(message: str) -> str:
    """Mark a message id for the catalogue where it is defined; translate it with :func:`_` where used."""
    return message


_ = gettext
