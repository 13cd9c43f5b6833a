"""The lists gRPC service (admin role): import, one-by-one changes, objections, repair, history, export.

Every change is audited before it is applied, moves the data version, and keeps the entry's history.
An import streams: rows are validated as they arrive and written in one transaction that is rolled
back at the end if any row was bad (unless ``skip_invalid``).
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import hashlib
import io
import json
import queue
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from typing import Any

import grpc

from mustcheck._generated.v1 import lists_pb2 as pb
from mustcheck._generated.v1 import lists_pb2_grpc as pb_grpc
from mustcheck.identifiers import IdentifierError, SubjectKind, normalise, validate_uscc

from .audit import AuditEvent
from .auth.access import AccessControl
from .auth.model import ROLE_ADMIN, Caller
from .checks import Clock
from .china_time import CHINA_STANDARD_TIME
from .csv_cells import inert_fields
from .errors import FailedPrecondition, InvalidArgument, NotFound, echo
from .evaluation import add_months, display_end, is_in_force
from .import_workers import ImportRules, ImportWorkers, StreamPart
from .list_rows import ROW_FIELDS, RowError, entry_from_row, parse_instant
from .masking import Masker, mask_id, mask_id_shapes, mask_name
from .policy.model import PolicySet
from .responses import persons_of
from .seen_keys import SeenKeys
from .service import AuditSink
from .store.base import EncodedEntry, EntryNotFound, EntryStatus, ListEntry, ListStore
from .store.codec import DECISION_DOCUMENT, SOURCE, entry_key

Context = grpc.aio.ServicerContext[Any, Any]
MAX_PROBLEMS = 10_000
_END = object()
RESOLUTIONS = ("upheld", "corrected", "revoked")
# Administrators' free text in an action's audit record.
FREE_TEXT_DETAIL = frozenset({"note", "reason"})
# What publication shows of personal data: nothing unmasked, whoever exports.
PUBLICATION = Masker()
EXPORT_FIELDS = tuple(field for field in ROW_FIELDS if field not in ("status", "status_changed"))


class LegacyCodes:
    """The allow-list in force: the policy file's codes and those administrators added to the store."""

    def __init__(self, policy: PolicySet, store: ListStore) -> None:
        self._policy = frozenset(policy.legacy_codes)
        self.policy_codes = self._policy
        self._store = store
        self.codes: frozenset[str] = frozenset()
        self.reload()

    def reload(self) -> None:
        self.codes = self._policy | frozenset(self._store.legacy_codes())


class ListsService(pb_grpc.ListsServiceServicer):
    def __init__(
        self,
        store: ListStore,
        policy: PolicySet,
        access: AccessControl,
        audit: AuditSink,
        clock: Clock,
        legacy: LegacyCodes,
        workers: ImportWorkers,
    ) -> None:
        self.workers = workers
        self.store = store
        self.policy = policy
        self.access = access
        self.audit = audit
        self.clock = clock
        self.legacy = legacy

    async def _authorised(self, context: Context) -> Caller:
        """The admin making this call; anyone else is refused (every refusal of this service is audited
        by :class:`~.refusals.RefusalAudit`)."""
        caller = self.access.caller(context)
        self.access.require_role(caller, ROLE_ADMIN)
        return caller

    async def _apply(
        self, context: Context, action: str, prepare: Callable[[], tuple[ListEntry, str, dict[str, Any]]]
    ) -> pb.EntryChange:
        """Authorise, validate (a refusal is audited too, by the interceptor), audit the change, then
        write it."""
        caller = await self._authorised(context)
        entry, history_action, detail = prepare()
        await self._note(caller, action, detail)
        return await self._write(entry, caller, history_action)

    async def _note(
        self, caller: Caller, action: str, detail: dict[str, Any], *, subject: str | None = None
    ) -> None:
        """Audit an administrator's action (refusals are audited by :class:`~.refusals.RefusalAudit`).
        Free text (notes, reasons) is kept with ID-number-shaped strings masked."""
        for free_text in FREE_TEXT_DETAIL & detail.keys():
            detail = {**detail, free_text: mask_id_shapes(str(detail[free_text]))}
        await self.audit.append(
            AuditEvent(
                kind="admin",
                caller_id=caller.caller_id,
                department=caller.department,
                subject=subject,  # protected by the log: keyed hash and ciphertext, never in clear
                outcome="changed",
                detail={"action": action, **detail},
            )
        )

    async def _run(self, function: Callable[[], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, function)

    # -- import ------------------------------------------------------------------------

    async def Import(
        self, request_iterator: AsyncIterator[pb.ImportChunk], context: Context
    ) -> pb.ImportReport:
        caller = await self._authorised(context)
        first = await anext(aiter(request_iterator), None)
        if first is None or not first.HasField("header"):
            raise InvalidArgument(
                "an import starts with its header (source, skip_invalid)", reason="import.header"
            )
        header = first.header
        source = header.source.strip()
        if not source:
            raise InvalidArgument("an import needs a source (who supplied the rows)", reason="import.source")
        complete_since = self._complete_since(header.complete_since, header.skip_invalid)
        await self._note(
            caller,
            "lists.import",
            {"source": source, "file": header.file_name}
            | ({"complete_since": complete_since.isoformat()} if complete_since else {}),
        )
        chunks: queue.Queue[object] = queue.Queue(maxsize=4)  # bounded: the import streams
        importer = _Import(ImportRules(self.policy, self.legacy.codes, source), header.skip_invalid)

        async def pump() -> None:
            try:
                async for chunk in request_iterator:
                    if chunk.HasField("end"):
                        importer.complete = True
                    elif chunk.HasField("lines"):
                        part = StreamPart(max(1, chunk.lines.first_line), chunk.lines.text)
                        await asyncio.to_thread(chunks.put, part)
                    elif chunk.HasField("rows"):
                        await asyncio.to_thread(chunks.put, StreamPart(0, chunk.rows))
            except BaseException:
                importer.fatal = "the import stream broke off: nothing was applied"
                raise
            finally:
                await asyncio.to_thread(chunks.put, _END)

        pumping = asyncio.create_task(pump())
        try:
            outcome = await self._run(
                lambda: self.store.import_entries(
                    importer.entries(chunks, self.workers),
                    actor=caller.caller_id,
                    action="import-update",
                    keep=importer.keep,
                )
            )
        finally:
            await pumping
        if importer.fatal:
            raise InvalidArgument(importer.fatal, reason="import.input")
        if complete_since is not None and outcome.applied:
            # A complete snapshot, applied whole (rows may not be skipped): the data is complete since then.
            since = complete_since
            outcome = replace(
                outcome,
                data_version=await self._run(
                    lambda: self.store.set_data_complete_since(
                        since, actor=caller.caller_id, how="import", at=self.clock()
                    )
                ),
            )
        report = pb.ImportReport(
            rows=importer.rows,
            inserted=outcome.inserted if outcome.applied else 0,
            updated=outcome.updated if outcome.applied else 0,
            unchanged=outcome.unchanged,
            rejected=importer.rejected,
            applied=outcome.applied,
            data_version=outcome.data_version,
            problems=[pb.RowProblem(line=line, reason=reason) for line, reason in importer.problems],
        )
        await self._note(
            caller,
            "lists.import.result",
            {
                "source": source,
                "rows": importer.rows,
                "inserted": report.inserted,
                "updated": report.updated,
                "unchanged": report.unchanged,
                "rejected": importer.rejected,
                "applied": outcome.applied,
                "data_version": outcome.data_version,
            },
        )
        return report

    def _complete_since(self, text: str, skip_invalid: bool) -> dt.datetime | None:
        if not text.strip():
            return None
        if skip_invalid:
            raise InvalidArgument(
                "a complete snapshot cannot skip invalid rows: drop skip_invalid or complete_since",
                reason="import.complete_since",
            )
        return self._since(text)

    def _since(self, text: str) -> dt.datetime:
        try:
            since = parse_instant(text.strip(), "complete_since")
        except RowError as error:
            raise InvalidArgument(str(error), reason="completeness.date") from None
        if since > self.clock():
            raise InvalidArgument(
                f"complete_since {text.strip()} is in the future", reason="completeness.date"
            )
        return since

    # -- one-by-one changes ------------------------------------------------------------

    def _row(self, text: str) -> dict[str, Any]:
        try:
            row = json.loads(text)
        except ValueError as error:
            raise InvalidArgument(f"the row is not valid JSON: {error}", reason="row.json") from None
        if not isinstance(row, dict):
            raise InvalidArgument("the row must be a JSON object", reason="row.json")
        return row

    def _entry(self, row: dict[str, Any]) -> ListEntry:
        try:
            return entry_from_row(row, self.policy, legacy_codes=self.legacy.codes)
        except RowError as error:
            raise InvalidArgument(f"invalid row: {error}", reason="row.invalid") from None

    def _find(self, ref: pb.EntryRef) -> ListEntry:
        entry_id = ref.entry_id.strip() or (
            entry_key(ref.source.strip(), ref.decision_document.strip())
            if ref.source and ref.decision_document
            else ""
        )
        if not entry_id:
            raise InvalidArgument(
                "name the entry: its id, or its source and decision document", reason="entry.ref"
            )
        try:
            return self.store.get_entry(entry_id)
        except EntryNotFound:
            raise NotFound(f"no list entry {echo(entry_id)}", reason="entry.unknown") from None

    async def _write(self, entry: ListEntry, caller: Caller, action: str) -> pb.EntryChange:
        version = await self._run(
            lambda: self.store.replace_entry(entry, actor=caller.caller_id, action=action, at=self.clock())
        )
        return pb.EntryChange(entry_id=entry.entry_id, status=entry.status.value, data_version=version)

    async def AddEntry(self, request: pb.EntryRow, context: Context) -> pb.EntryChange:
        def prepare() -> tuple[ListEntry, str, dict[str, Any]]:
            entry = self._entry(self._row(request.row_json))
            try:
                self.store.get_entry(entry.entry_id)
            except EntryNotFound:
                return entry, "add", {"entry_id": entry.entry_id}
            raise FailedPrecondition(
                f"entry {entry.entry_id} ({entry.source}, {entry.decision_document}) exists; use update",
                reason="entry.exists",
            )

        return await self._apply(context, "lists.add", prepare)

    async def UpdateEntry(self, request: pb.EntryRow, context: Context) -> pb.EntryChange:
        def prepare() -> tuple[ListEntry, str, dict[str, Any]]:
            row = self._row(request.row_json)
            entry = self._entry(row)
            current = self._find(pb.EntryRef(entry_id=entry.entry_id))
            if "status" not in row:
                entry = replace(entry, status=current.status, status_changed_at=current.status_changed_at)
            return entry, "update", {"entry_id": entry.entry_id}

        return await self._apply(context, "lists.update", prepare)

    async def OpenObjection(self, request: pb.EntryAction, context: Context) -> pb.EntryChange:
        def prepare() -> tuple[ListEntry, str, dict[str, Any]]:
            entry = self._find(request.entry)
            if entry.status is not EntryStatus.ACTIVE:
                raise FailedPrecondition(
                    f"entry {entry.entry_id} is {entry.status.value}, not active", reason="entry.status"
                )
            opened = replace(entry, status=EntryStatus.UNDER_OBJECTION, status_changed_at=self.clock())
            return opened, "objection open", {"entry_id": entry.entry_id, "note": request.note}

        return await self._apply(context, "lists.objection.open", prepare)

    async def ResolveObjection(self, request: pb.ObjectionResolution, context: Context) -> pb.EntryChange:
        def prepare() -> tuple[ListEntry, str, dict[str, Any]]:
            entry = self._find(request.entry)
            if entry.status is not EntryStatus.UNDER_OBJECTION:
                raise FailedPrecondition(
                    f"entry {entry.entry_id} is not under objection", reason="entry.status"
                )
            resolution = request.resolution.strip()
            if resolution not in RESOLUTIONS:
                raise InvalidArgument(
                    f"resolution must be one of {', '.join(RESOLUTIONS)}", reason="objection.resolution"
                )
            at = self.clock()
            if resolution == "revoked":
                resolved = replace(entry, status=EntryStatus.REVOKED, status_changed_at=at)
            elif resolution == "upheld":
                resolved = replace(entry, status=EntryStatus.ACTIVE, status_changed_at=at)
            else:
                corrections = self._row(request.corrected_json or "{}")
                unknown = sorted(set(corrections) - set(ROW_FIELDS))
                if not corrections or unknown or {"source", "decision_document", "status"} & set(corrections):
                    raise InvalidArgument(
                        "corrected needs the corrected fields (not source, decision_document or status)"
                        + (f"; unknown: {', '.join(unknown)}" if unknown else ""),
                        reason="objection.corrected",
                    )
                row = {**_row_of(entry), **corrections, "status": "active"}
                resolved = replace(self._entry(row), status_changed_at=at)
            detail = {"entry_id": entry.entry_id, "resolution": resolution, "note": request.note}
            return resolved, f"objection {resolution}", detail

        return await self._apply(context, "lists.objection.resolve", prepare)

    async def Repair(self, request: pb.EntryAction, context: Context) -> pb.EntryChange:
        def prepare() -> tuple[ListEntry, str, dict[str, Any]]:
            entry = self._find(request.entry)
            if entry.status not in (EntryStatus.ACTIVE, EntryStatus.UNDER_OBJECTION):
                raise FailedPrecondition(
                    f"entry {entry.entry_id} is {entry.status.value}", reason="entry.status"
                )
            severity = self.policy.severities.get(entry.severity)
            at = self.clock()
            if severity is not None:
                earliest = add_months(entry.decision_date, severity.min_months)
                if at < earliest:
                    raise FailedPrecondition(
                        f"a {entry.severity} record can be repaired {severity.min_months} months after its "
                        f"decision at the earliest: not before {_date(earliest)} (NDRC order No. 36)",
                        reason="repair.too_early",
                    )
            repaired = replace(entry, status=EntryStatus.REPAIRED, status_changed_at=at)
            return repaired, "repair", {"entry_id": entry.entry_id, "note": request.note}

        return await self._apply(context, "lists.repair", prepare)

    async def Revoke(self, request: pb.EntryAction, context: Context) -> pb.EntryChange:
        def prepare() -> tuple[ListEntry, str, dict[str, Any]]:
            entry = self._find(request.entry)
            if entry.status is EntryStatus.REVOKED:
                raise FailedPrecondition(f"entry {entry.entry_id} is already revoked", reason="entry.status")
            revoked = replace(entry, status=EntryStatus.REVOKED, status_changed_at=self.clock())
            return revoked, "revoke", {"entry_id": entry.entry_id, "note": request.note}

        return await self._apply(context, "lists.revoke", prepare)

    async def History(self, request: pb.SubjectRef, context: Context) -> pb.HistoryResponse:
        subject = normalise(request.subject)
        caller = await self._authorised(context)
        await self._note(caller, "lists.history", {}, subject=subject or None)
        records = await self._run(lambda: self.store.history_of_subject(subject))
        grant = self.access.registry.snapshot().grants.get(caller.caller_id)
        masker = Masker(grant.visible_fields if grant else ())
        return pb.HistoryResponse(
            items=[
                pb.HistoryItem(
                    entry_id=record.entry_id,
                    data_version=record.data_version,
                    action=record.action,
                    actor=record.actor,
                    changed_at=record.changed_at.isoformat(),
                    status=record.entry.status.value,
                    memorandum=record.entry.memorandum_id,
                    decision_document=_masked(masker, record.entry.decision_document, record.entry),
                )
                for record in records
            ]
        )

    async def AllowLegacy(self, request: pb.LegacyCode, context: Context) -> pb.LegacyCodeResponse:
        caller = await self._authorised(context)
        code = normalise(request.code)
        reason = request.reason.strip()
        if not reason:
            raise InvalidArgument("say why the code is allowed (--reason)", reason="legacy.reason")
        try:
            validate_uscc(code)
        except IdentifierError as error:
            if not error.checksum_only:
                raise InvalidArgument(
                    f"not a well-formed credit code: {error.message}", reason=error.rule
                ) from None
        else:
            raise InvalidArgument(
                f"{echo(code)} passes every checksum; it needs no allow-list entry", reason="legacy.valid"
            )
        admitted = self.legacy.codes
        await self._note(
            caller,
            "lists.allow-legacy",
            {"code": code, "reason": reason} | ({"unchanged": True} if code in admitted else {}),
        )
        if code in admitted:  # admitting it again changes nothing, and says so
            return pb.LegacyCodeResponse(code=code, data_version=self.store.data_version(), changed=False)
        version = await self._run(
            lambda: self.store.allow_legacy_code(code, reason, actor=caller.caller_id, at=self.clock())
        )
        self.legacy.reload()
        return pb.LegacyCodeResponse(code=code, data_version=version, changed=True)

    async def DisallowLegacy(self, request: pb.LegacyCode, context: Context) -> pb.LegacyCodeResponse:
        code = normalise(request.code)
        reason = request.reason.strip()

        def validate() -> dict[str, Any]:
            if not reason:
                raise InvalidArgument("say why the code is withdrawn (--reason)", reason="legacy.reason")
            if code in self.legacy.policy_codes and code not in self.store.legacy_codes():
                raise FailedPrecondition(
                    f"{code} is admitted by the policy file (legacy_codes.toml): withdraw it there",
                    reason="legacy.policy",
                )
            return {"code": code, "reason": reason}

        caller = await self._validated(context, "lists.disallow-legacy", validate)
        version = await self._run(
            lambda: self.store.disallow_legacy_code(code, actor=caller.caller_id, at=self.clock())
        )
        self.legacy.reload()
        if version is None:  # it was not admitted: nothing changed
            return pb.LegacyCodeResponse(code=code, data_version=self.store.data_version(), changed=False)
        return pb.LegacyCodeResponse(code=code, data_version=version, changed=True)

    async def _validated(
        self, context: Context, action: str, validate: Callable[[], dict[str, Any]]
    ) -> Caller:
        """Authorise, validate (a refusal is audited by :class:`~.refusals.RefusalAudit`, with its reason),
        then audit the change."""
        caller = await self._authorised(context)
        detail = validate()
        await self._note(caller, action, detail)
        return caller

    # -- data completeness (R6) -----------------------------------------------------------

    async def SetDataCompleteness(
        self, request: pb.DataCompleteness, context: Context
    ) -> pb.DataCompletenessResponse:
        if not request.complete_since.strip():
            await self._note(await self._authorised(context), "lists.data-completeness", {})
        else:
            reason = request.reason.strip()
            since = dt.datetime.min.replace(tzinfo=dt.UTC)

            def validate() -> dict[str, Any]:
                nonlocal since
                since = self._since(request.complete_since)
                if not reason:
                    raise InvalidArgument(
                        "say why the list data is complete since then (--reason)",
                        reason="completeness.reason",
                    )
                return {"complete_since": since.isoformat(), "reason": reason}

            caller = await self._validated(context, "lists.data-complete-since", validate)
            await self._run(
                lambda: self.store.set_data_complete_since(
                    since, actor=caller.caller_id, how="admin", at=self.clock()
                )
            )
        found = await self._run(self.store.data_completeness)
        if found is None:
            return pb.DataCompletenessResponse(data_version=self.store.data_version())
        return pb.DataCompletenessResponse(
            complete_since=found.complete_since.isoformat(),
            data_version=found.data_version,
            set_by=found.set_by,
            set_at=found.set_at.isoformat(),
        )

    # -- export ------------------------------------------------------------------------

    async def Export(self, request: pb.ExportListsRequest, context: Context) -> AsyncIterator[pb.ListsChunk]:
        caller = await self._authorised(context)
        export_format = request.format or "jsonl"
        if export_format not in ("jsonl", "csv"):
            raise InvalidArgument("format must be csv or jsonl", reason="export.format")
        if request.list not in ("", "red", "black"):
            raise InvalidArgument("list must be red or black", reason="export.list")
        try:
            at = parse_instant(request.as_of, "as_of") if request.as_of else self.clock()
        except RowError as error:
            raise InvalidArgument(str(error), reason="export.as_of") from None
        await self._note(caller, "lists.export", {"list": request.list, "as_of": at.isoformat()})
        rows = await self._run(lambda: list(self._published(request.list or None, at)))
        buffer = io.StringIO()
        if export_format == "csv":
            writer = csv.DictWriter(buffer, fieldnames=EXPORT_FIELDS, extrasaction="ignore")
            writer.writeheader()
            for row in rows:
                writer.writerow(
                    inert_fields({**row, "responsible_persons": _persons_cell(row["responsible_persons"])})
                )
        else:
            for row in rows:
                buffer.write(json.dumps(row, ensure_ascii=False) + "\n")
        text = buffer.getvalue()
        for start in range(0, len(text), 64 * 1024):
            yield pb.ListsChunk(data=text[start : start + 64 * 1024])

    def _published(self, list_kind: str | None, at: dt.datetime) -> Iterator[dict[str, Any]]:
        """Entries in force at ``at``, persons masked (R9); minor records are never published."""
        for entry in self.store.all_entries(list_kind=list_kind):
            severity = self.policy.severities.get(entry.severity)
            if severity is not None and not severity.published:
                continue
            if entry.memorandum_id not in self.policy.memoranda or not is_in_force(entry, self.policy, at):
                continue
            row = _row_of(entry)
            row["display_until"] = _date(display_end(entry, self.policy))
            for free_text in ("reason", "decision_document", "source"):
                row[free_text] = _masked(PUBLICATION, row[free_text], entry)
            if entry.subject_kind is SubjectKind.PERSON:
                row["subject_code"] = mask_id(entry.subject_code)
                row["subject_name"] = mask_name(entry.subject_name)
            row["responsible_persons"] = [
                {"id": mask_id(person["id"]), "name": mask_name(person["name"]), "role": person["role"]}
                for person in row["responsible_persons"]
            ]
            for private in ("status", "status_changed"):
                row.pop(private, None)
            yield row


class _Import:
    """One import's state: the rows' outcomes in stream order, duplicates, problems; runs in the store's
    transaction thread while worker processes validate the chunks."""

    def __init__(self, rules: ImportRules, skip_invalid: bool) -> None:
        self.rules = rules
        self.skip_invalid = skip_invalid
        self.rows = 0
        self.parsed = 0
        self.rejected = 0
        self.problems: list[tuple[int, str]] = []
        self.fatal = ""
        self.complete = False
        self._seen = SeenKeys()

    def keep(self) -> bool:
        """Commit? Only a complete stream whose rows are all valid (or, with skip_invalid, some)."""
        if not self.complete and not self.fatal:
            self.fatal = "the import stream ended before the end of the file: nothing was applied"
        if self.fatal:
            return False
        if self.rows == 0 or self.parsed == 0:
            self.fatal = "the file holds no rows"
            return False
        if self.rejected == self.rows:
            return False  # no valid row: the report lists why
        return self.rejected == 0 or self.skip_invalid

    def _problem(self, line: int, reason: str) -> None:
        self.rejected += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append((line, reason))

    def _parts(self, chunks: queue.Queue[object]) -> Iterator[StreamPart]:
        while True:
            part = chunks.get()
            if part is _END:
                return
            if self.fatal:
                continue  # drain the stream
            assert isinstance(part, StreamPart)
            yield part

    def entries(self, chunks: queue.Queue[object], workers: ImportWorkers) -> Iterator[EncodedEntry]:
        for result in workers.map(self.rules, self._parts(chunks)):
            if self.fatal:
                continue
            self.parsed += result.parsed
            for line, entry, error in result.rows:
                self.rows += 1
                if entry is None:
                    self._problem(line, error)
                    continue
                values = entry[0]
                key = hashlib.blake2b(values[0].encode(), digest_size=8).digest()
                if not self._seen.add(int.from_bytes(key)):
                    self._problem(
                        line,
                        f"duplicate key: source {values[SOURCE]!r} and decision document "
                        f"{values[DECISION_DOCUMENT]!r} appear earlier in the file",
                    )
                    continue
                yield entry
            self.fatal = result.fatal


def _date(instant: dt.datetime) -> str:
    return instant.astimezone(CHINA_STANDARD_TIME).date().isoformat()


def _row_of(entry: ListEntry) -> dict[str, Any]:
    """An entry back in list-row form (dates as China Standard Time days)."""
    return {
        "source": entry.source,
        "subject_code": entry.subject_code,
        "subject_name": entry.subject_name,
        "subject_kind": entry.subject_kind.value,
        "memorandum": entry.memorandum_id,
        "list_kind": entry.list_kind.value,
        "initiating_department": entry.initiating_department,
        "decision_document": entry.decision_document,
        "decision_date": _date(entry.decision_date),
        "severity": entry.severity,
        "reason": entry.reason,
        "effective_date": _date(entry.effective_from),
        "punish_until": _date(entry.punish_until),
        "display_until": _date(entry.display_until),
        "status": entry.status.value,
        "status_changed": entry.status_changed_at.isoformat() if entry.status_changed_at else "",
        "responsible_persons": [
            {"id": person.person_id, "name": person.name, "role": person.role.value}
            for person in entry.responsible_persons
        ],
    }


def _masked(masker: Masker, text: str, entry: ListEntry) -> str:
    """Free text of ``entry`` with the names and ID numbers of its persons masked (R9)."""
    names, ids = persons_of(entry)
    return masker.text(text, names=names, ids=ids)


def _persons_cell(persons: list[dict[str, str]]) -> str:
    return ";".join(f"{p['id']}|{p['name']}|{p['role']}" for p in persons)
