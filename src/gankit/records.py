"""metrics.jsonl, one JSON object per line: the one definition of its record kinds, for writers and readers.

Every record has "kind", "version", "step" and "epoch". The kinds:
  train    one log window: d_loss, g_loss, d_real, d_fake, g_grad_norm, d_grad_norm, images_per_s,
           seconds (the window's wall-clock time; older files lack it and their report has no training-time row);
           with ADA (stabilizers.ada_target) also augment_p and ada_rt, ADA's probability and its latest r_t
  eval     "eval": {metric: value}, "seconds"
  warning  "warning": the event (mode-collapse, divergence), "message", and the numbers behind it
  note     like a warning, for good news (mode-collapse-recovered); its event is under "warning" too,
           as in files written before records had a kind
Lines without "version" come from earlier gankit; kind_of tells their kind by their keys.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

VERSION = 1
Kind = Literal["train", "eval", "warning", "note"]
ENVELOPE = ("kind", "version", "step", "epoch")
ADA_FIELDS = ("augment_p", "ada_rt")  # a train record's ADA readings, as they stand at the log line
RECOVERED_SUFFIX = "-recovered"  # how version-less files mark a note


def _record(kind: Kind, step: int, epoch: int, fields: dict[str, Any]) -> dict[str, Any]:
    return {"kind": kind, "version": VERSION, "step": step, "epoch": epoch, **fields}


def train_record(step: int, epoch: int, stats: dict[str, float]) -> dict[str, Any]:
    return _record("train", step, epoch, stats)


def eval_record(step: int, epoch: int, metrics: dict[str, Any], seconds: float) -> dict[str, Any]:
    return _record("eval", step, epoch, {"eval": metrics, "seconds": seconds})


def warning_record(step: int, epoch: int, event: str, message: str, **numbers: Any) -> dict[str, Any]:
    return _record("warning", step, epoch, {"warning": event, "message": message, **numbers})


def note_record(step: int, epoch: int, event: str, message: str, **numbers: Any) -> dict[str, Any]:
    return _record("note", step, epoch, {"warning": event, "message": message, **numbers})


def kind_of(record: dict[str, Any]) -> Kind:
    if "kind" in record:
        return record["kind"]
    if "eval" in record:
        return "eval"
    if "warning" in record:
        return "note" if str(record["warning"]).endswith(RECOVERED_SUFFIX) else "warning"
    return "train"


def of_kind(records: list[dict[str, Any]], *kinds: Kind) -> list[dict[str, Any]]:
    return [record for record in records if kind_of(record) in kinds]


def fields(record: dict[str, Any]) -> dict[str, Any]:
    """What a record says besides its kind, version, step and epoch."""
    return {key: value for key, value in record.items() if key not in ENVELOPE}


def read_records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def to_line(record: dict[str, Any]) -> str:
    return json.dumps(record) + "\n"


def append_record(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as handle:
        handle.write(to_line(record))
