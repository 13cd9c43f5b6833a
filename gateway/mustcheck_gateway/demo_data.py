"""A deterministic demo data set: synthetic subjects with valid identifiers, in list rows.

The same ``subjects``, ``seed`` and ``today`` always give the same rows. Every
identifier is synthetic (checksums computed, never a real organisation). The set
covers every memorandum; companies with legal representatives and directly
responsible persons; government bodies; persons; entries that are active, under
objection, repaired, revoked, expired, and subjects clean for three years.

The first subjects are a fixed showcase (``Showcase``) that the demo tour checks.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from mustcheck.identifiers import (
    USCC_CHARSET,
    IdentifierError,
    SubjectKind,
    citizen_id_check_character,
    organization_code_check_character,
    uscc_check_character,
    validate_uscc,
)

from .china_time import CHINA_STANDARD_TIME
from .evaluation import add_months
from .policy.model import ListKind, Memorandum, PolicySet

SOURCE = "demo"
GOVERNMENT_INTEGRITY = "government-integrity"
_DIVISIONS = (
    "110108",
    "310115",
    "440305",
    "350203",
    "330106",
    "510107",
    "420106",
    "610113",
    "320508",
    "370202",
)
_BODY_CHARS = USCC_CHARSET[:-1].replace("X", "")  # keep organisation-code bodies plain
_FIRST_BIRTH_DAY = dt.date(1955, 1, 1)
_DAYS = 365 * 45
_PERSON_SPACE = len(_DIVISIONS) * _DAYS * 1000  # 7919 is prime and does not divide it: a permutation
_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华建国志红文斌宇浩凯欣怡晨"
_CITIES = ("北京", "上海", "深圳", "厦门", "杭州", "成都", "武汉", "西安", "苏州", "青岛")
_TRADES = ("科技", "建设工程", "食品", "医药", "物流", "环保", "农业发展", "电子商务", "投资", "制造")
_AGENCIES = ("市场监督管理局", "生态环境局", "住房和城乡建设局", "交通运输局", "自然资源局")


_SHOWCASE_LISTED = 6  # showcase subjects with rows of their own (the linked person has none)


def _is_credit_code(text: str) -> bool:
    try:
        validate_uscc(text)
    except IdentifierError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Showcase:
    """Subjects the demo tour checks, one per outcome kind."""

    red_company: str
    black_company: str
    linked_person: str
    objection_company: str
    clean_company: str
    black_person: str
    government_body: str


class _Generator:
    def __init__(self, seed: int, today: dt.date, policy: PolicySet) -> None:
        self.rng = random.Random(seed)
        self.today = dt.datetime(today.year, today.month, today.day, tzinfo=CHINA_STANDARD_TIME)
        self.policy = policy
        self.rows = 0
        self.persons = 0
        memoranda = sorted(policy.memoranda.values(), key=lambda memo: (memo.number, memo.id))
        self.for_companies = [
            m
            for m in memoranda
            if SubjectKind.ORGANIZATION in m.subject_kinds and m.id != GOVERNMENT_INTEGRITY
        ]
        self.for_persons = [m for m in memoranda if SubjectKind.PERSON in m.subject_kinds]
        self.government = policy.memoranda.get(GOVERNMENT_INTEGRITY)

    # -- identifiers and names ---------------------------------------------------

    def uscc(self, authority_and_type: str) -> str:
        body = "".join(self.rng.choice(_BODY_CHARS) for _ in range(8))
        first17 = (
            authority_and_type + self.rng.choice(_DIVISIONS) + body + organization_code_check_character(body)
        )
        return first17 + uscc_check_character(first17)

    def citizen_id(self) -> str:
        """A fresh number each call: region, birth day and sequence are spread from a counter
        (unique for the first 164 million persons), so no two persons collide. Numbers that are
        also valid credit codes are skipped: a check of one would have to name its kind."""
        while True:
            self.persons += 1
            region, rest = divmod(self.persons * 7919 % _PERSON_SPACE, _DAYS * 1000)
            day, sequence = divmod(rest, 1000)
            born = _FIRST_BIRTH_DAY + dt.timedelta(days=day)
            first17 = f"{_DIVISIONS[region]}{born:%Y%m%d}{sequence:03d}"
            number = first17 + citizen_id_check_character(first17)
            if not _is_credit_code(number):
                return number

    def person_name(self) -> str:
        return self.rng.choice(_SURNAMES) + "".join(
            self.rng.choice(_GIVEN) for _ in range(self.rng.choice((1, 2)))
        )

    def company(self) -> tuple[str, str]:
        return self.uscc("91"), f"{self.rng.choice(_CITIES)}示例{self.rng.choice(_TRADES)}有限公司"

    def government_body(self) -> tuple[str, str]:
        return self.uscc("11"), f"{self.rng.choice(_CITIES)}示例区{self.rng.choice(_AGENCIES)}"

    # -- rows --------------------------------------------------------------------

    def row(
        self,
        code: str,
        name: str,
        kind: SubjectKind,
        memo: Memorandum,
        state: str,
        persons: list[dict[str, str]] | None = None,
    ) -> dict[str, Any]:
        self.rows += 1
        punish, display = memo.punish_months, memo.display_months
        if state in ("active", "under_objection"):
            decision = add_months(self.today, -self.rng.randrange(0, punish))
        elif state in ("repaired", "revoked"):
            severity = self.policy.severities.get(memo.severity)
            earliest = severity.min_months if severity else 0
            decision = add_months(self.today, -self.rng.randrange(earliest + 1, punish + 1))
        elif state == "expired":
            decision = add_months(self.today, -(punish + self.rng.randrange(1, 12)))
        else:  # "clean": the bad record ended more than three years ago
            decision = add_months(self.today, -(punish + 37 + self.rng.randrange(0, 24)))
        decision -= dt.timedelta(days=self.rng.randrange(1, 28))
        effective = decision + dt.timedelta(days=self.rng.randrange(0, 8))
        status = {"expired": "active", "clean": "active"}.get(state, state)
        changed = ""
        if status in ("repaired", "revoked"):
            changed = (self.today - dt.timedelta(days=self.rng.randrange(1, 60))).date().isoformat()
        elif status == "under_objection":
            changed = (self.today - dt.timedelta(days=self.rng.randrange(1, 20))).date().isoformat()
        return {
            "source": SOURCE,
            "subject_code": code,
            "subject_name": name,
            "subject_kind": kind.value,
            "memorandum": memo.id,
            "list_kind": memo.list_kind.value,
            "initiating_department": memo.initiating_department,
            "decision_document": f"示例〔{decision.year}〕{memo.number:02d}-{self.rows:07d}号",
            "decision_date": decision.date().isoformat(),
            "severity": memo.severity,
            "reason": f"示例数据：{memo.title}",
            "effective_date": effective.date().isoformat(),
            "punish_until": add_months(decision, punish).date().isoformat(),
            "display_until": add_months(decision, display).date().isoformat(),
            "status": status,
            "status_changed": changed,
            "responsible_persons": persons or [],
        }

    def responsible(self, person_id: str = "", name: str = "") -> list[dict[str, str]]:
        persons = [
            {
                "id": person_id or self.citizen_id(),
                "name": name or self.person_name(),
                "role": "legal_representative",
            }
        ]
        if self.rng.random() < 0.5:
            role = self.rng.choice(("principal", "directly_responsible"))
            persons.append({"id": self.citizen_id(), "name": self.person_name(), "role": role})
        return persons

    def random_state(self, memo: Memorandum) -> str:
        draw = self.rng.random()
        if memo.list_kind is ListKind.RED:
            return "active" if draw < 0.8 else "expired"
        for state, threshold in (
            ("active", 0.55),
            ("under_objection", 0.65),
            ("repaired", 0.73),
            ("revoked", 0.77),
            ("expired", 0.90),
        ):
            if draw < threshold:
                return state
        return "clean"


def generate_rows(subjects: int, seed: int, today: dt.date, policy: PolicySet) -> Iterator[dict[str, Any]]:
    """Rows for ``subjects`` subjects (each has one or two rows); the showcase comes first."""
    gen = _Generator(seed, today, policy)
    rows, _ = _showcase(gen)
    yield from rows
    companies = iter(_cycle(gen.for_companies))
    persons = iter(_cycle(gen.for_persons))
    for _ in range(max(0, subjects - _SHOWCASE_LISTED)):
        draw = gen.rng.random()
        if draw < 0.5:
            code, name = gen.company()
            for memo in _some(gen, companies):
                owners = gen.responsible() if memo.list_kind is ListKind.BLACK else []
                yield gen.row(code, name, SubjectKind.ORGANIZATION, memo, gen.random_state(memo), owners)
        elif draw < 0.6 and gen.government is not None:
            code, name = gen.government_body()
            yield gen.row(
                code,
                name,
                SubjectKind.ORGANIZATION,
                gen.government,
                gen.random_state(gen.government),
                gen.responsible(),
            )
        else:
            code, name = gen.citizen_id(), gen.person_name()
            for memo in _some(gen, persons):
                yield gen.row(code, name, SubjectKind.PERSON, memo, gen.random_state(memo))


def showcase(seed: int, today: dt.date, policy: PolicySet) -> Showcase:
    """The showcase subjects of ``generate_rows`` with the same seed and day."""
    return _showcase(_Generator(seed, today, policy))[1]


def _showcase(gen: _Generator) -> tuple[list[dict[str, Any]], Showcase]:
    red = next(m for m in gen.for_companies if m.list_kind is ListKind.RED)
    black = gen.policy.memoranda.get("judgment-defaulters") or next(
        m for m in gen.for_companies if m.list_kind is ListKind.BLACK
    )
    person_memo = next(m for m in gen.for_persons if m.list_kind is ListKind.BLACK)
    government = gen.government or black
    linked_id, linked_name = gen.citizen_id(), gen.person_name()
    plan = (
        (gen.company(), SubjectKind.ORGANIZATION, red, "active", None),
        (gen.company(), SubjectKind.ORGANIZATION, black, "active", (linked_id, linked_name)),
        (gen.company(), SubjectKind.ORGANIZATION, black, "under_objection", None),
        (gen.company(), SubjectKind.ORGANIZATION, black, "clean", None),
        ((gen.citizen_id(), gen.person_name()), SubjectKind.PERSON, person_memo, "active", None),
        (gen.government_body(), SubjectKind.ORGANIZATION, government, "active", None),
    )
    rows = []
    for (code, name), kind, memo, state, owner in plan:
        persons = None
        if kind is SubjectKind.ORGANIZATION and memo.list_kind is ListKind.BLACK:
            persons = gen.responsible(*owner) if owner else gen.responsible()
        rows.append(gen.row(code, name, kind, memo, state, persons))
    codes = [row["subject_code"] for row in rows]
    return rows, Showcase(codes[0], codes[1], linked_id, codes[2], codes[3], codes[4], codes[5])


def _cycle(memoranda: list[Memorandum]) -> Iterator[Memorandum]:
    while True:
        yield from memoranda


def _some(gen: _Generator, memoranda: Iterator[Memorandum]) -> list[Memorandum]:
    return [next(memoranda) for _ in range(2 if gen.rng.random() < 0.2 else 1)]
