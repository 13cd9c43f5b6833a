"""The auditors' report: one self-contained HTML file (no network; charts as inline SVG).

It shows coverage per department and matter (应查必查), restrictions mandated versus applied (奖惩到位),
checks over time (跟踪问效) and the audit chain's verification status. :func:`render` is a pure function
of the figures; ``mustcheck audit report`` fetches them from the gateway.
"""

from __future__ import annotations

import datetime as dt
import html
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

OUTCOME_COLOURS = {
    "restrictions": "#c0392b",
    "under_objection": "#d68910",
    "incentives": "#1e8449",
    "listed_no_measures": "#5d6d7e",
    "no_record": "#7f8c8d",
}


@dataclass(frozen=True)
class CoverageRow:
    matter: str
    department: str
    reported: int
    backed: int
    without_check: tuple[str, ...]
    mandatory_due: int
    mandatory_applied: int
    mandatory_missed: tuple[tuple[str, str], ...]
    restricted_without_feedback: int


@dataclass(frozen=True)
class Verification:
    ok: bool
    records: int
    checkpoints: int
    reason: str


def _e(value: object) -> str:
    return html.escape(str(value))


def _bar(value: int, total: int, width: int = 160, colour: str = "#2e86c1") -> str:
    filled = 0 if total <= 0 else round(width * value / total)
    return (
        f'<svg width="{width}" height="14" role="img" aria-label="{value} of {total}">'
        f'<rect width="{width}" height="14" fill="#eaecee"/>'
        f'<rect width="{filled}" height="14" fill="{colour}"/></svg>'
    )


def _timeline(stats: Sequence[tuple[str, str, int]]) -> str:
    """Checks per day as stacked bars by outcome."""
    by_day: dict[str, dict[str, int]] = defaultdict(dict)
    for day, outcome, count in stats:
        by_day[day][outcome] = count
    days = sorted(by_day)
    if not days:
        return "<p>No checks in this period.</p>"
    peak = max(sum(counts.values()) for counts in by_day.values())
    width, height, gap = 640, 180, 2
    bar = max(4, (width - 40) // len(days) - gap)
    parts = [f'<svg width="{width}" height="{height + 40}" role="img" aria-label="checks per day">']
    for index, day in enumerate(days):
        x, y = 30 + index * (bar + gap), height
        for outcome in OUTCOME_COLOURS:
            count = by_day[day].get(outcome, 0)
            if not count:
                continue
            h = round(height * count / peak)
            y -= h
            parts.append(
                f'<rect x="{x}" y="{y}" width="{bar}" height="{h}" fill="{OUTCOME_COLOURS[outcome]}">'
                f"<title>{_e(day)}: {count} {_e(outcome)}</title></rect>"
            )
    parts.append(f'<text x="30" y="{height + 16}" font-size="11">{_e(days[0])}</text>')
    parts.append(f'<text x="{width - 80}" y="{height + 16}" font-size="11">{_e(days[-1])}</text>')
    parts.append(f'<text x="0" y="12" font-size="11">{peak}</text></svg>')
    legend = " ".join(
        f'<span class="key" style="background:{colour}"></span>{_e(name)}'
        for name, colour in OUTCOME_COLOURS.items()
    )
    return "".join(parts) + f'<p class="legend">{legend}</p>'


def render(
    *,
    since: dt.datetime | None,
    until: dt.datetime | None,
    coverage: Sequence[CoverageRow],
    daily: Sequence[tuple[str, str, int]],
    verification: Verification,
    generated_at: dt.datetime,
) -> str:
    period = f"{since.date() if since else '(start)'} – {until.date() if until else '(now)'}"
    reported = sum(row.reported for row in coverage)
    backed = sum(row.backed for row in coverage)
    due = sum(row.mandatory_due for row in coverage)
    applied = sum(row.mandatory_applied for row in coverage)
    chain = (
        f'<p class="ok">Audit chain intact: {verification.records} records and '
        f"{verification.checkpoints} signed checkpoints verified.</p>"
        if verification.ok
        else f'<p class="bad">Audit chain TAMPERED: {_e(verification.reason)}</p>'
    )
    coverage_rows = "".join(
        "<tr>"
        f"<td>{_e(row.department)}</td><td>{_e(row.matter)}</td><td>{row.reported}</td>"
        f"<td>{row.backed} {_bar(row.backed, row.reported)}</td>"
        f"<td>{_e(', '.join(row.without_check)) or '—'}</td>"
        f"<td>{row.restricted_without_feedback}</td>"
        "</tr>"
        for row in sorted(coverage, key=lambda r: (r.department, r.matter))
        if row.reported or row.restricted_without_feedback
    )
    measure_rows = "".join(
        "<tr>"
        f"<td>{_e(row.matter)}</td><td>{row.mandatory_due}</td>"
        f"<td>{row.mandatory_applied} {_bar(row.mandatory_applied, row.mandatory_due, colour='#1e8449')}</td>"
        f"<td>{_e('; '.join(f'{a}: {m}' for a, m in row.mandatory_missed)) or '—'}</td>"
        "</tr>"
        for row in sorted(coverage, key=lambda r: r.matter)
        if row.mandatory_due
    )
    return f"""<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8">
<title>MustCheck audit report {_e(period)}</title>
<style>
body {{ font-family: "Noto Sans CJK SC", "Source Han Sans SC", "WenQuanYi Micro Hei", sans-serif;
  margin: 2em; color: #1c2833; }}
h1 {{ font-size: 1.5em; }} h2 {{ font-size: 1.15em; margin-top: 1.6em; }}
table {{ border-collapse: collapse; }}
td, th {{ border-bottom: 1px solid #d5d8dc; padding: 4px 10px; text-align: left; }}
.ok {{ color: #1e8449; font-weight: bold; }} .bad {{ color: #c0392b; font-weight: bold; }}
.summary span {{ display: inline-block; margin-right: 2em; }}
.key {{ display: inline-block; width: 10px; height: 10px; margin: 0 4px 0 12px; }}
</style></head><body>
<h1>MustCheck audit report — {_e(period)}</h1>
<p>Generated {_e(generated_at.isoformat(timespec="seconds"))}.</p>
{chain}
<p class="summary"><span>Approvals reported: <b>{reported}</b></span>
<span>backed by a check (应查必查): <b>{backed}</b></span>
<span>mandatory measures applied (奖惩到位): <b>{applied}</b> of <b>{due}</b></span></p>
<h2>Coverage per department and matter (应查必查)</h2>
<table id="coverage"><tr><th>Department</th><th>Matter</th><th>Approvals</th><th>Backed by a check</th>
<th>Without a check</th><th>Restricted checks without feedback</th></tr>{coverage_rows}</table>
<h2>Restrictions mandated versus applied (奖惩到位)</h2>
<table id="measures">
<tr><th>Matter</th><th>Mandatory measures due</th><th>Applied</th><th>Not applied</th></tr>
{measure_rows}</table>
<h2>Checks over time (跟踪问效)</h2>
{_timeline(daily)}
</body></html>
"""
