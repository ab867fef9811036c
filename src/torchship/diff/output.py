"""Where a diff goes: diff.json and diff.html written together (or not at all), and the terminal summary."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from torchship.diff.html import render_diff_html
from torchship.diff.record import DiffRecord
from torchship.pipeline import replace_dir, temp_dir_beside

DIFF_JSON = "diff.json"
DIFF_HTML = "diff.html"
SHOWN_CHANGES = 5


def write_diff(record: DiffRecord, folder: Path) -> Path:
    """diff.json and diff.html in `folder`, replaced as one (a failed write leaves the earlier diff)."""
    folder = Path(folder)
    tmp = temp_dir_beside(folder)
    tmp.mkdir(parents=True)
    try:
        (tmp / DIFF_JSON).write_text(
            json.dumps(record.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"
        )
        (tmp / DIFF_HTML).write_text(render_diff_html(record), encoding="utf-8")
        replace_dir(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _confusion_lines(record: DiffRecord) -> list[str]:
    """The label table: a row per old top label, a column per new one (the diagonal: unchanged)."""
    confusion = record.task_diff.confusion
    if confusion is None:
        return []
    width = max(6, *(len(label) for label in confusion.labels)) + 1
    corner = "old/new"
    width = max(width, len(corner) + 1)
    header = f"  {corner:<{width}}" + "".join(f"{label:>{width}}" for label in confusion.labels)
    rows = [
        f"  {label:<{width}}" + "".join(f"{count:>{width}}" for count in counts)
        for label, counts in zip(confusion.labels, confusion.counts, strict=True)
    ]
    return [header, *rows]


def summary_lines(record: DiffRecord) -> list[str]:
    """What a user reads in the terminal: the measures, what changed (a few inputs), latency, the verdict."""
    task = record.task_diff
    lines = [
        f"{record.name} {record.old.version} → {record.new.version} ({record.task}), {task.inputs} inputs "
        f"({len(record.skipped)} left out)",
    ]
    for m in task.measures:
        value = "n/a" if m.value is None else f"{m.value:.4g}"
        lines.append(f"  {m.name:<20} {value:>10}   {m.meaning}")
    lines.extend(_confusion_lines(record))
    for kind, counts in (task.entity_types or {}).items():
        lines.append(
            f"  {kind:<12} unchanged {counts.unchanged}, added {counts.added}, removed {counts.removed}, "
            f"relabelled {counts.relabelled}, re-spanned {counts.respanned}"
        )
    if task.note:
        lines.append(f"  ! {task.note}")
    lines.extend(f"  note: {n}" for n in record.notes)
    if task.changed:
        lines.append(f"  changed answers: {len(task.changed)} of {task.inputs}, e.g.")
        for c in task.changed[:SHOWN_CHANGES]:
            request = json.dumps(c.request, ensure_ascii=False)
            lines.append(f"    #{c.index} {request[:70]}{'...' if len(request) > 70 else ''}: {c.why}")
    if record.latency is not None:
        old, new = record.latency.old, record.latency.new
        lines.append(
            f"  latency ({record.latency.clients} clients, same run): p50 {old.p50_ms:.1f} → {new.p50_ms:.1f} ms "
            f"(x{record.latency.p50_ratio:.2f}), p99 {old.p99_ms:.1f} → {new.p99_ms:.1f} ms "
            f"(x{record.latency.p99_ratio:.2f}), {old.throughput_rps:.1f} → {new.throughput_rps:.1f} req/s "
            f"(x{record.latency.throughput_ratio:.2f})"
        )
    for s in record.skipped[:SHOWN_CHANGES]:
        lines.append(f"  left out {s.where}: {s.reason}")
    if record.breaches:
        lines.append("BREACH: " + "; ".join(b.message for b in record.breaches))
    else:
        lines.append("no promotion limit broken")
    return lines
