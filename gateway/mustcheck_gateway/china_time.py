"""China Standard Time: the zone of every date a person reads and of the daily quotas (UTC+08:00, no
daylight saving), named "CST" where a time is shown."""

from __future__ import annotations

import datetime as dt

CHINA_STANDARD_TIME = dt.timezone(dt.timedelta(hours=8), "CST")
