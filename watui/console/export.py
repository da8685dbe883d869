"""Saving the sessions table as shown (filter and sort applied) to a CSV or JSON file.

The command palette's "Export sessions as CSV/JSON" (k9s users save views). The file holds the
rows the table shows, in its order, with the table's columns as it draws them plus each
session's id. It goes to the current directory, or to the data dir when the current directory
cannot take it; an existing file is never replaced (a new name is picked), and the file is
readable by its owner only (it holds phone numbers).

Names and every other cell are data: in CSV a cell that a spreadsheet would run as a formula
(it starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return) gets a leading ``'``.
"""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from watui.console.requests import ExportFormat
from watui.models import Session
from watui.widgets.sessions_table import CLUSTER_COLUMNS, COLUMNS, Column, cell_text
from watui.widgets.status_badge import session_look

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""What a spreadsheet may read as the start of a formula (OWASP's CSV injection list)."""


@dataclass(frozen=True)
class Exported:
    path: Path
    count: int
    where: str
    """"the current directory" or "the data dir (…why not the current directory)"."""


class ExportFailed(Exception):
    pass


def columns_for(rows: list[Session]) -> list[Column]:
    """The table's columns (NODE only in cluster mode, as the table does), none dropped for width."""
    clustered = any(s.node_id for s in rows)
    return [c for c in COLUMNS if clustered or c.key not in CLUSTER_COLUMNS]


def title(column: Column) -> str:
    """The column's heading, in words where the table shows a symbol (``↻``: RECONNECTS)."""
    return column.title if column.title.isascii() else column.key.upper()


def cell(column: Column, session: Session, now: datetime) -> str:
    """A cell as the table shows it (the status as its badge reads: "logged out", "qr ready")."""
    if column.key == "status":
        return session_look(session).label
    return cell_text(column.key, session, now)


def defuse(text: str) -> str:
    """A CSV cell no spreadsheet runs as a formula."""
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def render(rows: list[Session], fmt: ExportFormat, now: datetime) -> str:
    columns = columns_for(rows)
    if fmt is ExportFormat.JSON:
        keys = ["id", *(title(c).lower().replace("/", "_") for c in columns)]
        records = [dict(zip(keys, [s.id, *(cell(c, s, now) for c in columns)], strict=True)) for s in rows]
        return json.dumps(records, ensure_ascii=False, indent=2) + "\n"
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["ID", *(title(c) for c in columns)])
    for session in rows:
        writer.writerow([defuse(session.id), *(defuse(cell(c, session, now)) for c in columns)])
    return out.getvalue()


def write_new(directory: Path, stem: str, suffix: str, text: str) -> Path:
    """Write ``text`` to ``stem.suffix`` in ``directory``, or ``stem-2.suffix``… if that exists."""
    data = text.encode("utf-8")
    for n in itertools.count(1):
        path = directory / f"{stem}{'' if n == 1 else f'-{n}'}.{suffix}"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path
    raise AssertionError("unreachable")


def _save(rows: list[Session], fmt: ExportFormat, now: datetime, data_dir: Path | None) -> Exported:
    text = render(rows, fmt, now)
    stem = f"watui-sessions-{now:%Y%m%d-%H%M%S}"
    try:
        return Exported(write_new(Path.cwd(), stem, fmt.value, text), len(rows), "the current directory")
    except OSError as exc:
        why = exc.strerror or str(exc)
    if data_dir is None:
        raise ExportFailed(f"The current directory cannot take the file: {why}.")
    try:
        path = write_new(data_dir, stem, fmt.value, text)
    except OSError as exc:
        raise ExportFailed(f"Neither the current directory ({why}) nor the data dir "
                           f"({exc.strerror or exc}) can take the file.") from None
    return Exported(path, len(rows), f"the data dir (the current directory: {why})")


async def export_sessions(rows: list[Session], fmt: ExportFormat, now: datetime,
                          data_dir: Path | None) -> Exported:
    """Write ``rows`` as a new file (off the event loop: 10,000 rows take a moment)."""
    return await asyncio.to_thread(_save, rows, fmt, now, data_dir)
