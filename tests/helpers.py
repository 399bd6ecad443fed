"""Small helpers for tests: build JSONL inputs, run the real CLI in-process, read a lake with DuckDB."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb


def write_jsonl(path: Path, records: list) -> Path:
    """Writes records (dicts are JSON-encoded, str/bytes written as given) one per line."""
    with open(path, "wb") as handle:
        for record in records:
            if isinstance(record, dict):
                line = json.dumps(record, ensure_ascii=False).encode("utf-8")
            elif isinstance(record, str):
                line = record.encode("utf-8")
            else:
                line = record
            handle.write(line + b"\n")
    return path


def lake_rows(lake: Path, table: str, columns: str = "*", where: str = "") -> list[dict]:
    """Rows of one lake table as dicts (documents with their hive partition columns)."""
    files = list((Path(lake) / table).rglob("*.parquet"))
    if not files:
        return []
    con = duckdb.connect()
    cursor = con.execute(
        f"SELECT {columns} FROM read_parquet('{lake}/{table}/**/*.parquet', hive_partitioning=true) {where}")
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def summary(lake: Path) -> dict:
    return json.loads((Path(lake) / "_SUMMARY.json").read_text())


ARTICLE_EN = (
    "The city council approved a new budget on Tuesday after a long debate about public transport.\n\n"
    "Council members said the plan would add twelve new bus lines and repair three bridges over the river "
    "before the end of next year, while keeping property taxes at their current level.\n\n"
    "Opposition members argued that the money for the bridges should have come from the regional "
    "government, and they promised to raise the question again at the next meeting in the spring.\n\n"
    "The mayor thanked residents for their patience and said construction would start in March."
)

ARTICLE_VI = (
    "Hội đồng thành phố đã thông qua ngân sách mới vào thứ Ba sau một cuộc tranh luận dài về giao thông công cộng.\n\n"
    "Các thành viên hội đồng cho biết kế hoạch sẽ bổ sung mười hai tuyến xe buýt mới và sửa chữa ba cây cầu "
    "trước cuối năm sau, đồng thời giữ nguyên mức thuế tài sản hiện tại.\n\n"
    "Thị trưởng cảm ơn người dân đã kiên nhẫn và cho biết việc xây dựng sẽ bắt đầu vào tháng Ba."
)

ARTICLE_DE = (
    "Der Stadtrat hat am Dienstag nach einer langen Debatte über den öffentlichen Nahverkehr einen neuen "
    "Haushalt beschlossen.\n\n"
    "Die Mitglieder des Rates sagten, der Plan sehe zwölf neue Buslinien und die Reparatur von drei Brücken "
    "vor, während die Grundsteuer auf dem heutigen Niveau bleibe.\n\n"
    "Der Bürgermeister dankte den Bürgern für ihre Geduld und sagte, die Bauarbeiten würden im März beginnen."
)


def sigkill_while_staging(proc: subprocess.Popen, staging: Path, what: str = "run", files: int = 5,
                          timeout: float = 240) -> list:
    """Waits until `proc` (a `wirewash run` started in its own session) has staged `files` document files
    under `staging`, then SIGKILLs its whole session, as a crash of the machine would, and reaps it.
    Returns the staged files it saw; fails when the run ended before it could be killed."""
    deadline = time.monotonic() + timeout
    staged: list = []
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            staged = list(staging.glob("*/documents/*.parquet.staged"))
            if len(staged) >= files:  # the writer is busy
                break
            time.sleep(0.005)
        assert proc.poll() is None, f"the {what} ended before it could be killed: " + \
            proc.stderr.read().decode()[-500:]
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    return staged


# A small lake of every row kind: two dated days, an exact copy, an undated article, a malformed line.
SHAPES_RECORDS = [
    {"id": "en", "source": "a.example", "published": "2024-03-01T08:00:00Z", "text": ARTICLE_EN},
    {"id": "en-copy", "source": "b.example", "published": "2024-03-02T08:00:00Z", "text": ARTICLE_EN},
    {"id": "vi", "source": "c.example", "published": "2024-03-03", "text": ARTICLE_VI},
    {"id": "de", "source": "d.example", "text": ARTICLE_DE},
    "{not json",
]


def python_output(code: str) -> str:
    """Runs `code` in a fresh interpreter from the repository folder; its stdout (a failure shows its stderr)."""
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout
