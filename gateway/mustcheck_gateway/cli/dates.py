"""Date options: one parser per shape, each naming the formats it accepts — in its help and its error.

A day is ``YYYY-MM-DD`` (read as 00:00 China Standard Time where an instant is needed); an instant is
a day or an ISO 8601 date and time, with an offset or read as China Standard Time.
"""

from __future__ import annotations

import argparse
import datetime as dt

from ..china_time import CHINA_STANDARD_TIME
from ..i18n import N_, _

DAY_FORMATS = N_("YYYY-MM-DD, e.g. 2026-12-01")
INSTANT_FORMATS = N_(
    "YYYY-MM-DD (00:00 China Standard Time) or an ISO 8601 instant such as 2026-12-01T09:30:00+08:00 "
    "(no offset: China Standard Time)"
)


def day_help(what: str) -> str:
    """``what`` (translated) with the accepted format."""
    return _("{what} ({formats})").format(what=what, formats=_(DAY_FORMATS))


def instant_help(what: str) -> str:
    return _("{what} ({formats})").format(what=what, formats=_(INSTANT_FORMATS))


def day(text: str) -> dt.date:
    """An argparse type: a calendar day, ``YYYY-MM-DD``."""
    try:
        if len(text.strip()) != 10:
            raise ValueError(text)
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            _("{text!r} is not a date: give {formats}").format(text=text, formats=_(DAY_FORMATS))
        ) from None


def instant(text: str) -> dt.datetime:
    """An argparse type: a day (00:00 China Standard Time) or an ISO 8601 instant."""
    value = text.strip()
    try:
        if len(value) == 10:
            return dt.datetime.combine(dt.date.fromisoformat(value), dt.time(), CHINA_STANDARD_TIME)
        if len(value) < 16 or value[10] not in "T ":
            raise ValueError(text)
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            _("{text!r} is not a date or instant: give {formats}").format(
                text=text, formats=_(INSTANT_FORMATS)
            )
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=CHINA_STANDARD_TIME)


def instant_text(text: str) -> str:
    """An argparse type for options the gateway reads itself: checked here, passed on as given."""
    if not text.strip():
        return ""  # not given
    instant(text)
    return text.strip()


DATE_TYPES = (day, instant, instant_text)
