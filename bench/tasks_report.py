"""bench/tasks.py's results: their typed form (the JSON), the targets' verdicts, the README table and the
HTML page. Pure: everything here reads a result, nothing measures.

    python bench/tasks_report.py [--results bench/results/tasks-latest.json] [--readme README.md]

regenerates the table between the README's markers from the results (what `bench/tasks.py --readme` runs).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import jinja2
from pydantic import BaseModel

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
TEMPLATES = Path(__file__).resolve().parent / "templates"
START_MARKER = "<!-- tasks-table:start -->"
END_MARKER = "<!-- tasks-table:end -->"
SYSTEMS = ("torchship", "stock", "fastapi")


class SystemFigure(BaseModel):
    """One system on one (task, size, length): a time-bounded load at (up to) 16 clients."""

    system: str  # torchship | stock | fastapi
    clients: int
    requests: int
    failures: int
    seconds: float
    requests_per_s: float
    texts_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    single_request_ms: float
    client_cpu_cores: float
    roofline_fraction: float


class Cell(BaseModel):
    task: str
    size: str  # minilm | bert-base
    length: str  # short | long
    texts_per_request: int
    rows_per_request: float  # model rows a request costs (a reranking request's pairs, keywords' candidates)
    tokens_per_row: float  # measured with the tokenizer, special tokens included
    gflop_per_request: float  # from the model's config and the rows' tokens (bench/roofline.py)
    roofline_requests_per_s: float
    figures: list[SystemFigure]

    def figure(self, system: str) -> SystemFigure | None:
        return next((f for f in self.figures if f.system == system), None)

    def ratio(self, other: str) -> float | None:
        ours, theirs = self.figure("torchship"), self.figure(other)
        if ours is None or theirs is None or theirs.requests_per_s <= 0:
            return None
        return ours.requests_per_s / theirs.requests_per_s

    @property
    def label(self) -> str:
        return f"{self.task} · {self.size} · {self.length}"


class Target(BaseModel):
    """One of issue 21's targets: torchship / `against` ≥ `threshold` on the cells it covers."""

    name: str
    against: str  # stock | fastapi
    threshold: float
    size: str | None = None  # the cells it covers: this size (None: any)
    length: str | None = None  # and this length (None: any)

    def covers(self, cell: Cell) -> bool:
        return self.size in (None, cell.size) and self.length in (None, cell.length)


TARGETS = (
    Target(name="long texts ≥ 2.5x the stock-style handler", against="stock", threshold=2.5, length="long"),
    Target(name="bert-base ≥ 2x the FastAPI peer", against="fastapi", threshold=2.0, size="bert-base"),
)


class Verdict(BaseModel):
    target: str
    cell: str
    ratio: float
    met: bool


class TasksResult(BaseModel):
    timestamp: str
    command: str
    quick: bool
    machine: str
    load_average_start: list[float]
    load_average_end: list[float]
    threads: int
    clients: int
    window_s: float
    weights: str  # what the weights are, and why speed does not depend on them
    serve: dict[str, int | str]
    roofline: dict  # bench/roofline.py's Roofline, as measured in this run
    cells: list[Cell]
    verdicts: list[Verdict]


def verdicts(cells: list[Cell]) -> list[Verdict]:
    """Every target on every cell it covers that measured both systems."""
    found = []
    for target in TARGETS:
        for cell in cells:
            ratio = cell.ratio(target.against)
            if target.covers(cell) and ratio is not None:
                found.append(
                    Verdict(target=target.name, cell=cell.label, ratio=ratio, met=ratio >= target.threshold)
                )
    return found


def rate(value: float) -> str:
    """Requests/s with the digits that mean something at its size (bert-base long runs well under 1/s)."""
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _requests(cell: Cell, system: str) -> str:
    figure = cell.figure(system)
    if figure is None:
        return "–"
    shown = rate(figure.requests_per_s)
    if cell.texts_per_request > 1:
        shown += f" ({rate(figure.texts_per_s)} texts/s)"
    if figure.clients != 16:
        shown += f" [{figure.clients} client{'s' if figure.clients > 1 else ''}]"
    return shown


def _ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}x"


def _fraction(cell: Cell, system: str) -> str:
    figure = cell.figure(system)
    return "–" if figure is None else f"{figure.roofline_fraction:.1%}"


TABLE_HEADER = (
    "| task | size | length | torchship req/s | stock req/s | FastAPI req/s | torchship / stock | "
    "torchship / FastAPI | torchship p50 / p99 ms | roofline fraction (torchship / stock / FastAPI) |\n"
    "|---|---|---|---|---|---|---|---|---|---|"
)


def table_rows(result: TasksResult) -> list[str]:
    rows = []
    for cell in result.cells:
        ours = cell.figure("torchship")
        latency = "–" if ours is None else f"{ours.p50_ms:.0f} / {ours.p99_ms:.0f}"
        fractions = " / ".join(_fraction(cell, system) for system in SYSTEMS)
        rows.append(
            f"| {cell.task} | {cell.size} | {cell.length} | {_requests(cell, 'torchship')} | "
            f"{_requests(cell, 'stock')} | {_requests(cell, 'fastapi')} | {_ratio(cell.ratio('stock'))} | "
            f"{_ratio(cell.ratio('fastapi'))} | {latency} | {fractions} |"
        )
    return rows


def verdict_lines(result: TasksResult) -> list[str]:
    """Per target: met in how many cells, and the lowest ratio."""
    lines = []
    for target in TARGETS:
        found = [v for v in result.verdicts if v.target == target.name]
        if not found:
            lines.append(f"- **{target.name}**: not measured in this run")
            continue
        met = sum(v.met for v in found)
        lowest = min(found, key=lambda v: v.ratio)
        state = "met" if met == len(found) else "missed"
        lines.append(
            f"- **{target.name}**: {state} (met in {met} of {len(found)} cells; "
            f"lowest {lowest.ratio:.2f}x, {lowest.cell}): "
            + ", ".join(f"{v.cell} {v.ratio:.2f}x {'✓' if v.met else '✗'}" for v in found)
        )
    return lines


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def readme_table(result: TasksResult, results_name: str) -> str:
    """The README section between the markers (markers excluded)."""
    return (
        _environment()
        .get_template("tasks-table.md.j2")
        .render(
            result=result,
            results_name=results_name,
            header=TABLE_HEADER,
            rows=table_rows(result),
            verdicts=verdict_lines(result),
        )
    )


def replace_table(text: str, table: str) -> str:
    """`text` with what lies between the markers replaced by `table`; the markers must be there, once."""
    pattern = re.compile(re.escape(START_MARKER) + r".*?" + re.escape(END_MARKER), re.DOTALL)
    if len(pattern.findall(text)) != 1:
        raise SystemExit(f"the README needs the markers {START_MARKER} and {END_MARKER}, once each")
    return pattern.sub(lambda _: f"{START_MARKER}\n{table.strip()}\n{END_MARKER}", text)


def chart_html(result: TasksResult) -> str:
    """A self-contained page: per cell, each system's requests/s as a bar (inline SVG, no assets)."""
    bars = []
    for cell in result.cells:
        top = max((f.requests_per_s for f in cell.figures), default=0) or 1
        bars.append(
            {
                "cell": cell,
                "bars": [
                    {"figure": f, "width": 420 * f.requests_per_s / top, "rate": rate(f.requests_per_s)}
                    for f in sorted(cell.figures, key=lambda f: SYSTEMS.index(f.system))
                ],
            }
        )
    return (
        _environment()
        .get_template("tasks.html.j2")
        .render(
            result=result,
            groups=bars,
            verdicts=verdict_lines(result),
            rows=table_rows(result),
            header=TABLE_HEADER,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS / "tasks-latest.json")
    parser.add_argument("--readme", type=Path, default=REPO / "README.md")
    args = parser.parse_args()
    write_readme(args.results, args.readme)


def write_readme(results: Path, readme: Path) -> None:
    result = TasksResult.model_validate_json(results.read_text())
    # The timestamped file the latest one copies: what a reader finds in bench/results.
    name = f"tasks-{result.timestamp}.json"
    readme.write_text(replace_table(readme.read_text(), readme_table(result, name)))
    print(f"wrote the tasks table of {name} into {readme}")


if __name__ == "__main__":
    main()
