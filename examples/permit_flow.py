"""A construction-permit office that checks every applicant inline (应查必查) and reports what it did
(奖惩到位).

Run it against the demo (``mustcheck demo`` in another terminal)::

    python examples/permit_flow.py --token-file mustcheck-demo/demo.token \
        91110108551385082Q 914403001922038217

For each application it checks the applicant through the SDK, decides — reject when mandatory restrictions
apply, defer to a person when the answer says a person must confirm (R13) or no trustworthy answer could be
had (R12), approve otherwise (on the green channel when the applicant qualifies) — keeps the receipt with
its decision in a JSON Lines file, and reports the outcome to the gateway (执行反馈).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

from mustcheck import CheckResult, CheckUnavailable, Client, InvalidSubject, MustCheckError

MATTER = "MOHURD-0001"  # 建筑工程施工许可证核发
PURPOSE = "建筑工程施工许可审批"


@dataclass(frozen=True)
class Decision:
    application_id: str
    applicant: str
    decision: str  # approved, rejected, deferred
    why: str
    applied_measures: tuple[str, ...] = ()
    receipt: str = ""


def decide(application_id: str, result: CheckResult) -> Decision:
    """The permit office's rule: mandatory restrictions are applied; a person confirms what needs one."""
    mandatory = tuple(measure.id for measure in result.mandatory_measures)
    receipt = result.receipt.compact if result.receipt else ""
    if result.human_review_required:
        return Decision(application_id, result.subject, "deferred", result.review_notice, (), receipt)
    if result.restricted and mandatory:
        texts = "; ".join(measure.text for measure in result.mandatory_measures)
        return Decision(
            application_id, result.subject, "rejected", f"mandatory restrictions: {texts}", mandatory, receipt
        )
    why = "green channel: no bad record for three years" if result.green_channel else "no restriction applies"
    return Decision(application_id, result.subject, "approved", why, (), receipt)


def process(client: Client, application_id: str, applicant: str) -> Decision:
    try:
        result = client.check(applicant, MATTER, purpose=PURPOSE, authorization_ref=f"{application_id}-AUTH")
    except InvalidSubject as error:
        return Decision(
            application_id, applicant, "rejected", f"invalid applicant identifier: {error.message}"
        )
    except CheckUnavailable as error:
        # Must-check: no answer is never "no record". A person takes it from here.
        return Decision(application_id, applicant, "deferred", f"credit check unavailable: {error.message}")
    decision = decide(application_id, result)
    client.report_outcome(
        result.receipt, application_id, decision.decision, list(decision.applied_measures), note=decision.why
    )
    return decision


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("applicants", nargs="+", metavar="APPLICANT", help="credit codes or citizen IDs")
    parser.add_argument("--gateway", default="127.0.0.1:50051")
    parser.add_argument("--token-file", type=Path, required=True)
    parser.add_argument(
        "--decisions",
        type=Path,
        default=Path("permit-decisions.jsonl"),
        help="where decisions are kept with their receipts",
    )
    options = parser.parse_args()
    token = options.token_file.read_text(encoding="utf-8").strip()
    # Application ids are unique per run, even for two runs within one second.
    stamp = f"{dt.datetime.now():%Y%m%d%H%M%S}-{secrets.token_hex(3)}"
    with Client(options.gateway, token=token, timeout=3.0) as client, options.decisions.open("a") as kept:
        for number, applicant in enumerate(options.applicants, start=1):
            try:
                decision = process(client, f"PERMIT-{stamp}-{number:03d}", applicant)
            except MustCheckError as error:
                print(f"{applicant}: the gateway refused the report: {error.message}", file=sys.stderr)
                return 1
            kept.write(json.dumps(decision.__dict__, ensure_ascii=False) + "\n")
            print(f"{decision.application_id} {decision.decision:8} {decision.why}")
    print(f"decisions and receipts kept in {options.decisions}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
