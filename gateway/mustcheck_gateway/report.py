"""The auditors' report: one self-contained HTML file (no network; charts as inline SVG).

It shows coverage per department and matter (应查必查), restrictions mandated versus applied (奖惩到位),
checks over time (跟踪问效) and the audit chain's verification status. :func:`render` is a pure function
of the figures; ``mustcheck audit report`` fetches them from the gateway.
"""

from __future__ import annotations

import datetime as dt
import html
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .china_time import CHINA_STANDARD_TIME
from .i18n import N_, _, active_language, ngettext

OUTCOME_COLOURS = {
    "restrictions": "#c0392b",
    "under_objection": "#d68910",
    "incentives": "#1e8449",
    "listed_no_measures": "#5d6d7e",
    "no_record": "#7f8c8d",
}

OUTCOME_NAMES = {
    "restrictions": N_("restrictions"),
    "under_objection": N_("under objection"),
    "incentives": N_("incentives"),
    "listed_no_measures": N_("listed, no measures"),
    "no_record": N_("no record"),
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
        return f"<p>{_e(_('No checks in this period.'))}</p>"
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
                f"<title>{_e(day)}: {count} {_e(_(OUTCOME_NAMES[outcome]))}</title></rect>"
            )
    parts.append(f'<text x="30" y="{height + 16}" font-size="11">{_e(days[0])}</text>')
    parts.append(f'<text x="{width - 80}" y="{height + 16}" font-size="11">{_e(days[-1])}</text>')
    parts.append(f'<text x="0" y="12" font-size="11">{peak}</text></svg>')
    legend = " ".join(
        f'<span class="key" style="background:{colour}"></span>{_e(_(OUTCOME_NAMES[name]))}'
        for name, colour in OUTCOME_COLOURS.items()
    )
    return "".join(parts) + f'<p class="legend">{legend}</p>'


# Chinese must never render as empty boxes: the common CJK fonts of Linux, macOS and Windows in turn.
FONT_STACK = (
    '"Noto Sans CJK SC", "Source Han Sans SC", "Source Han Sans CN", "Noto Sans SC", '
    '"WenQuanYi Micro Hei", "WenQuanYi Zen Hei", "PingFang SC", "Hiragino Sans GB", '
    '"Microsoft YaHei", "SimHei", "SimSun", sans-serif'
)


@dataclass(frozen=True)
class Names:
    """Department and matter names beside their codes (from the policy files)."""

    departments: Mapping[str, str] = field(default_factory=dict)
    matters: Mapping[str, str] = field(default_factory=dict)

    def department(self, code: str) -> str:
        name = self.departments.get(code)
        return f"{name} ({code})" if name else code

    def matter(self, code: str) -> str:
        name = self.matters.get(code)
        return f"{name} ({code})" if name else code


def period_days(
    since: dt.datetime | None, until: dt.datetime | None, first_day: str | None, generated_at: dt.datetime
) -> tuple[str, str]:
    """The first and last day the report covers, as China Standard Time dates (``until`` is exclusive).

    Without ``--since`` the period starts on the first day with a check (else the report's day); without
    ``--until`` it ends on the day the report was made.
    """
    today = generated_at.astimezone(CHINA_STANDARD_TIME).date()
    if since is not None:
        start = since.astimezone(CHINA_STANDARD_TIME).date().isoformat()
    else:
        start = first_day or today.isoformat()
    end = (
        (until - dt.timedelta(microseconds=1)).astimezone(CHINA_STANDARD_TIME).date()
        if until is not None
        else today
    )
    return start, end.isoformat()


@dataclass(frozen=True)
class WorklistItem:
    """One item of the worklist: what went wrong, where, and which approval."""

    kind: str
    department: str
    matter: str
    item: str


def worklist(coverage: Sequence[CoverageRow], names: Names) -> list[WorklistItem]:
    """Approvals without a check, mandatory measures not applied, restricted checks without feedback."""
    items: list[WorklistItem] = []
    for row in sorted(coverage, key=lambda r: (r.department, r.matter)):
        department, matter = names.department(row.department), names.matter(row.matter)
        items.extend(
            WorklistItem(_("approval without a check"), department, matter, approval)
            for approval in row.without_check
        )
        items.extend(
            WorklistItem(_("mandatory measure not applied"), department, matter, f"{approval}: {measure}")
            for approval, measure in row.mandatory_missed
        )
        if row.restricted_without_feedback:
            items.append(
                WorklistItem(
                    _("restricted checks without feedback"),
                    department,
                    matter,
                    ngettext(
                        "{count} check with restrictions never followed by feedback",
                        "{count} checks with restrictions never followed by feedback",
                        row.restricted_without_feedback,
                    ).format(count=row.restricted_without_feedback),
                )
            )
    return items


def _worklist_html(items: Sequence[WorklistItem]) -> str:
    if not items:
        return f'<p class="ok" id="worklist">{_e(_("No exceptions: nothing to follow up."))}</p>'
    rows = "".join(
        f'<tr class="exception"><td>{_e(item.kind)}</td><td>{_e(item.department)}</td>'
        f"<td>{_e(item.matter)}</td><td>{_e(item.item)}</td></tr>"
        for item in items
    )
    heading = ngettext("{count} exception to follow up", "{count} exceptions to follow up", len(items))
    return (
        f'<section class="worklist" id="worklist"><h2>{_e(heading.format(count=len(items)))}</h2>'
        f'<table id="exceptions"><tr><th>{_e(_("Exception"))}</th><th>{_e(_("Department"))}</th>'
        f"<th>{_e(_('Matter'))}</th><th>{_e(_('Approval or count'))}</th></tr>{rows}</table></section>"
    )


def render(
    *,
    since: dt.datetime | None,
    until: dt.datetime | None,
    coverage: Sequence[CoverageRow],
    daily: Sequence[tuple[str, str, int]],
    verification: Verification,
    generated_at: dt.datetime,
    names: Names | None = None,
) -> str:
    """The report in the active language (:mod:`mustcheck_gateway.i18n`), exceptions first."""
    names = names or Names()
    first_day = min((day for day, _outcome, _count in daily), default=None)
    start, end = period_days(since, until, first_day, generated_at)
    period = _("{start} to {end} (China Standard Time)").format(start=start, end=end)
    reported = sum(row.reported for row in coverage)
    backed = sum(row.backed for row in coverage)
    due = sum(row.mandatory_due for row in coverage)
    applied = sum(row.mandatory_applied for row in coverage)
    chain = (
        '<p class="ok">'
        + _e(
            _("Audit chain intact: {records} records and {checkpoints} signed checkpoints verified.").format(
                records=verification.records, checkpoints=verification.checkpoints
            )
        )
        + "</p>"
        if verification.ok
        else '<p class="bad">'
        + _e(_("Audit chain TAMPERED: {reason}").format(reason=verification.reason))
        + "</p>"
    )

    def flagged(row: CoverageRow) -> str:
        exceptional = row.without_check or row.mandatory_missed or row.restricted_without_feedback
        return ' class="exception"' if exceptional else ""

    coverage_rows = "".join(
        f"<tr{flagged(row)}>"
        f"<td>{_e(names.department(row.department))}</td><td>{_e(names.matter(row.matter))}</td>"
        f"<td>{row.reported}</td>"
        f"<td>{row.backed} {_bar(row.backed, row.reported)}</td>"
        f"<td>{_e(', '.join(row.without_check)) or '—'}</td>"
        f"<td>{row.restricted_without_feedback}</td>"
        "</tr>"
        for row in sorted(
            coverage,
            key=lambda r: (not flagged(r), r.department, r.matter),
        )
        if row.reported or row.restricted_without_feedback
    )
    measure_rows = "".join(
        f"<tr{flagged(row)}>"
        f"<td>{_e(names.matter(row.matter))}</td><td>{row.mandatory_due}</td>"
        f"<td>{row.mandatory_applied} {_bar(row.mandatory_applied, row.mandatory_due, colour='#1e8449')}</td>"
        f"<td>{_e('; '.join(f'{a}: {m}' for a, m in row.mandatory_missed)) or '—'}</td>"
        "</tr>"
        for row in sorted(coverage, key=lambda r: (not r.mandatory_missed, r.matter))
        if row.mandatory_due
    )
    generated = generated_at.astimezone(CHINA_STANDARD_TIME).strftime("%Y-%m-%d %H:%M:%S CST (UTC+08:00)")
    title = _("MustCheck audit report")
    language = "zh-CN" if active_language() == "zh" else "en"
    return f"""<!DOCTYPE html>
<html lang="{language}"><head><meta charset="utf-8">
<title>{_e(title)} {_e(period)}</title>
<style>
body {{ font-family: {FONT_STACK};
  margin: 2em; color: #1c2833; }}
h1 {{ font-size: 1.5em; }} h2 {{ font-size: 1.15em; margin-top: 1.6em; }}
table {{ border-collapse: collapse; }}
td, th {{ border-bottom: 1px solid #d5d8dc; padding: 4px 10px; text-align: left; }}
.ok {{ color: #1e8449; font-weight: bold; }} .bad {{ color: #c0392b; font-weight: bold; }}
.summary span {{ display: inline-block; margin-right: 2em; }}
.key {{ display: inline-block; width: 10px; height: 10px; margin: 0 4px 0 12px; }}
.worklist {{ border-left: 6px solid #c0392b; background: #fdedec; padding: 0.4em 1em 1em; }}
.worklist h2 {{ color: #c0392b; margin-top: 0.6em; }}
tr.exception td {{ background: #fadbd8; }}
</style></head><body>
<h1>{_e(title)} — {_e(period)}</h1>
<p>{_e(_("Generated {time}.").format(time=generated))}</p>
{chain}
{_worklist_html(worklist(coverage, names))}
<p class="summary"><span>{_e(_("Approvals reported:"))} <b>{reported}</b></span>
<span>{_e(_("backed by a check (应查必查):"))} <b>{backed}</b></span>
<span>{_e(_("mandatory measures applied (奖惩到位):"))} <b>{applied}</b> / <b>{due}</b></span></p>
<h2>{_e(_("Coverage per department and matter (应查必查)"))}</h2>
<table id="coverage"><tr><th>{_e(_("Department"))}</th><th>{_e(_("Matter"))}</th>
<th>{_e(_("Approvals"))}</th><th>{_e(_("Backed by a check"))}</th>
<th>{_e(_("Without a check"))}</th><th>{_e(_("Restricted checks without feedback"))}</th></tr>
{coverage_rows}</table>
<h2>{_e(_("Restrictions mandated versus applied (奖惩到位)"))}</h2>
<table id="measures">
<tr><th>{_e(_("Matter"))}</th><th>{_e(_("Mandatory measures due"))}</th><th>{_e(_("Applied"))}</th>
<th>{_e(_("Not applied"))}</th></tr>
{measure_rows}</table>
<h2>{_e(_("Checks over time (跟踪问效)"))}</h2>
{_timeline(daily)}
</body></html>
"""
