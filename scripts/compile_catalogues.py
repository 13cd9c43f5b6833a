"""Compile the gettext catalogues: every ``locale/*/LC_MESSAGES/*.po`` to the ``.mo`` beside it.

The compiled ``.mo`` files are committed (a wheel carries them; an installation needs no build step)
and written byte for byte reproducibly, so ``--check`` (CI, tests/test_i18n.py) fails on a stale one.
The standard library reads ``.mo`` files but has no compiler; this one is GNU msgfmt's format without
the optional hash table, for the subset of PO that the catalogues use: comments, ``msgid``,
``msgid_plural``, ``msgstr``, ``msgstr[n]``, continued strings; ``#, fuzzy`` entries are left out.
"""

from __future__ import annotations

import argparse
import ast
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE_ROOT = ROOT / "gateway" / "mustcheck_gateway"
LOCALE_ROOT = SOURCE_ROOT / "locale"
MARKERS = {"_", "N_", "gettext", "_t"}


class CatalogueError(Exception):
    pass


def parse_po(text: str, source: str = "<po>") -> dict[str, str]:
    """Message id → translation; plural forms joined by NUL as in a ``.mo`` (ids too)."""
    messages: dict[str, str] = {}
    entry: dict[str, list[str]] = {}
    fuzzy = False
    field = ""

    def finish() -> None:
        nonlocal entry, fuzzy
        if "msgid" in entry and not fuzzy:
            msgid = "".join(entry["msgid"])
            if "msgid_plural" in entry:
                msgid += "\0" + "".join(entry["msgid_plural"])
                forms = sorted(key for key in entry if key.startswith("msgstr["))
                msgstr = "\0".join("".join(entry[key]) for key in forms)
            else:
                msgstr = "".join(entry.get("msgstr", []))
            if msgstr.replace("\0", ""):
                messages[msgid] = msgstr
        entry, fuzzy = {}, False

    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            if line.startswith("#,") and "fuzzy" in line:
                if "msgstr" in entry:
                    finish()
                fuzzy = True
            continue
        if line.startswith('"'):
            if not field:
                raise CatalogueError(f"{source}:{number}: a continued string outside an entry")
            entry[field].append(_literal(line, source, number))
            continue
        keyword, _, rest = line.partition(" ")
        if keyword == "msgid" and any(key.startswith("msgstr") for key in entry):
            finish()
        if keyword not in ("msgid", "msgid_plural", "msgstr") and not keyword.startswith("msgstr["):
            raise CatalogueError(f"{source}:{number}: unknown keyword {keyword!r}")
        field = keyword
        entry[field] = [_literal(rest.strip(), source, number)]
    finish()
    return messages


def _literal(text: str, source: str, number: int) -> str:
    try:
        value = ast.literal_eval(text)
    except (SyntaxError, ValueError):
        raise CatalogueError(f"{source}:{number}: not a quoted string: {text}") from None
    if not isinstance(value, str):
        raise CatalogueError(f"{source}:{number}: not a quoted string: {text}")
    return value


def mo_bytes(messages: dict[str, str]) -> bytes:
    """A GNU ``.mo`` file (little-endian, no hash table), message ids sorted."""
    keys = sorted(messages)
    ids = [key.encode("utf-8") for key in keys]
    strs = [messages[key].encode("utf-8") for key in keys]
    count = len(keys)
    key_table = 7 * 4
    value_table = key_table + count * 8
    data_start = value_table + count * 8
    offsets: list[int] = []
    data = b""
    for blob in (*ids, *strs):
        offsets.append(data_start + len(data))
        data += blob + b"\0"
    header = struct.pack("<7I", 0x950412DE, 0, count, key_table, value_table, 0, data_start)
    pairs = zip((*ids, *strs), offsets, strict=True)
    tables = b"".join(struct.pack("<2I", len(blob), offset) for blob, offset in pairs)
    return header + tables + data


def message_ids(sources: Path = SOURCE_ROOT) -> dict[str, str]:
    """Every message id the code marks (``_("…")``, ``N_("…")``), with where it is first used."""
    found: dict[str, str] = {}
    for path in sorted(sources.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in MARKERS
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                found.setdefault(node.args[0].value, f"{path.relative_to(ROOT)}:{node.lineno}")
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "ngettext"
                and len(node.args) == 3
                and all(isinstance(arg, ast.Constant) and isinstance(arg.value, str) for arg in node.args[:2])
            ):
                singular, plural = (arg.value for arg in node.args[:2])  # type: ignore[attr-defined]
                found.setdefault(f"{singular}\0{plural}", f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def missing(po: Path) -> dict[str, str]:
    """Message ids used in code that ``po`` does not translate."""
    translated = parse_po(po.read_text(encoding="utf-8"), str(po))
    return {msgid: where for msgid, where in message_ids().items() if msgid not in translated}


def catalogues(root: Path = LOCALE_ROOT) -> list[Path]:
    return sorted(root.glob("*/LC_MESSAGES/*.po"))


def compiled(po: Path) -> bytes:
    return mo_bytes(parse_po(po.read_text(encoding="utf-8"), str(po)))


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a committed .mo is stale")
    parser.add_argument(
        "--missing", action="store_true", help="list message ids in code without a translation (PO entries)"
    )
    options = parser.parse_args(argv)
    if options.missing:
        for po in catalogues():
            for msgid, where in missing(po).items():
                print(f'#: {where}\nmsgid {_quoted(msgid)}\nmsgstr ""\n')
        return 0
    stale = []
    for po in catalogues():
        mo = po.with_suffix(".mo")
        wanted = compiled(po)
        if options.check:
            if not mo.is_file() or mo.read_bytes() != wanted:
                stale.append(mo)
        else:
            mo.write_bytes(wanted)
            print(f"compiled {mo.relative_to(ROOT)}")
    if stale:
        for mo in stale:
            print(f"stale: {mo.relative_to(ROOT)} (run scripts/compile_catalogues.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
