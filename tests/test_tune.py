"""torchship tune: the grid, the pick, the .mar variants, --write, and a real sweep in TorchServe."""

from __future__ import annotations

import json
import zipfile

import pytest
import yaml
from typer.testing import CliRunner

from conftest import packaged
from tiny_models import save_tiny_cross_encoder, save_tiny_qa, write_spec
from torchship.archiver.package import MODEL_CONFIG_FILE
from torchship.cli import app
from torchship.errors import SpecError
from torchship.spec import ServeSpec, load_spec
from torchship.tune import command as tune_command
from torchship.tune.chart import render_chart
from torchship.tune.choose import best_within_budget
from torchship.tune.plan import ServeConfig, sweep_grid
from torchship.tune.records import Measurement, TuneResult
from torchship.tune.spec_edit import with_serve, write_tuned
from torchship.tune.sweep import verdict as sweep_verdict
from torchship.tune.variant import write_variant


def config(workers=1, threads=1, batch=4, delay=5) -> ServeConfig:
    return ServeConfig(workers=workers, threads=threads, batch_size=batch, max_batch_delay_ms=delay)


def measured(cfg: ServeConfig, rps: float, p95: float, failures: int = 0) -> Measurement:
    return Measurement(
        config=cfg,
        backend="torchscript",
        requests=100,
        failures=failures,
        throughput_rps=rps,
        p50_ms=p95 / 2,
        p95_ms=p95,
        p99_ms=p95 * 1.2,
        client_cpu_cores=0.1,
        start_s=3.0,
    )


# --- the grid ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("cores", [1, 2, 4, 8])
def test_grid_never_oversubscribes_and_starts_with_the_spec(cores):
    serve = ServeSpec(batch_size=8, max_batch_delay_ms=5, workers=1)
    grid = sweep_grid(serve, cores)
    assert grid[0] == ServeConfig(workers=1, threads=cores, batch_size=8, max_batch_delay_ms=5)
    assert len(grid) == len(set(grid))
    assert all(c.workers * c.threads <= cores for c in grid)
    assert {c.workers for c in grid} >= {1, cores}
    # Spinning OpenMP threads only where a worker has a team of threads to spin.
    spinning = [c for c in grid if c.omp_wait_policy == "active"]
    assert all(c.threads > 1 for c in spinning)
    assert bool(spinning) == (cores > 1)
    # Bounded: 3 batches x 3 delays per worker layout (x2 policies), the layouts growing with log2(cores).
    assert len(grid) <= 2 * 9 * (cores.bit_length() + 2) + 1


def test_grid_keeps_batches_within_what_one_request_may_carry():
    grid = sweep_grid(ServeSpec(batch_size=4, max_texts_per_request=8), 2)
    assert max(c.batch_size for c in grid) == 8


# --- the pick ----------------------------------------------------------------------------------------


def test_pick_is_the_fastest_within_budget_without_failures():
    fastest_but_slow_tail = measured(config(batch=16), rps=300, p95=250)
    fast_with_failures = measured(config(batch=8, delay=2), rps=280, p95=80, failures=1)
    best = measured(config(batch=8), rps=250, p95=90)
    slower = measured(config(batch=4), rps=120, p95=40)
    ms = [slower, fastest_but_slow_tail, best, fast_with_failures]
    assert best_within_budget(ms, budget_p95_ms=100) is best
    assert best_within_budget(ms, budget_p95_ms=None) is fastest_but_slow_tail
    assert best_within_budget(ms, budget_p95_ms=50) is slower
    assert best_within_budget(ms, budget_p95_ms=10) is None


def test_pick_holds_p99_within_the_tail_bound():
    steady = measured(config(batch=16), rps=200, p95=100)  # p99 120 = 2.4x p50 50
    spiky = measured(config(batch=8), rps=260, p95=100).model_copy(update={"p99_ms": 400.0})  # 8x p50
    ms = [spiky, steady]
    assert best_within_budget(ms, budget_p95_ms=None, max_tail_ratio=None) is spiky
    assert best_within_budget(ms, budget_p95_ms=None, max_tail_ratio=2.5) is steady
    assert best_within_budget(ms, budget_p95_ms=None, max_tail_ratio=2.0) is None
    assert (steady.tail_ratio, spiky.tail_ratio) == (120 / 50, 400 / 50)
    assert sweep_verdict(spiky, None, 2.5) == "misses: p99 over 2.5x p50"
    assert sweep_verdict(spiky, 90, 2.5) == "misses: p95 over the 90 ms budget, p99 over 2.5x p50"
    assert sweep_verdict(steady, None, 2.5) == "eligible"


def test_engines_are_backend_by_precision_the_spec_first_unbuildable_ones_said(monkeypatch, tmp_path):
    from torchship.tune import backends

    spec = load_spec(write_spec(tmp_path / "m", "unused"))
    monkeypatch.setattr(
        backends,
        "unsupported_reason",
        lambda backend, precision: None if (backend, precision) != ("torchscript", "int8-static") else "no",
    )
    engines, skipped = backends.engines_to_sweep(spec, ["onnx"], ["fp32", "int8-static"])
    labels = [e.label for e in engines]
    assert labels == ["torchscript", "onnx", "onnx int8-static"]
    assert [(e.label, why) for e, why in skipped.items()] == [("torchscript int8-static", "no")]
    only_own, _ = backends.engines_to_sweep(spec, [], [])
    assert [e.label for e in only_own] == ["torchscript"]
    with pytest.raises(SpecError, match="unknown precision 'fp8'"):
        backends.engines_to_sweep(spec, None, ["fp8"])
    monkeypatch.setattr(
        backends, "unsupported_reason", lambda b, p: None if p == "fp32" else "no CPU support"
    )
    with pytest.raises(SpecError, match="no backend here can build bf16"):
        backends.engines_to_sweep(spec, None, ["bf16"])


# --- the .mar variant --------------------------------------------------------------------------------


def test_variant_changes_only_the_serving_configuration(tiny_package, tmp_path):
    _, _, mar = tiny_package
    target = write_variant(mar, config(workers=2, threads=1, batch=16, delay=7), tmp_path / "v" / mar.name)
    with zipfile.ZipFile(mar) as original, zipfile.ZipFile(target) as variant:
        assert sorted(original.namelist()) == sorted(variant.namelist())
        for name in original.namelist():
            if name != MODEL_CONFIG_FILE:
                assert original.read(name) == variant.read(name), name
        before = yaml.safe_load(original.read(MODEL_CONFIG_FILE))
        after = yaml.safe_load(variant.read(MODEL_CONFIG_FILE))
    assert (after["minWorkers"], after["maxWorkers"], after["batchSize"], after["maxBatchDelay"]) == (
        2,
        2,
        16,
        7,
    )
    assert after["handler"]["threads"] == 1 and after["handler"]["workers"] == 2
    assert after["responseTimeout"] == before["responseTimeout"]
    untouched = {k: v for k, v in before["handler"].items() if k not in ("threads", "workers")}
    assert {k: after["handler"][k] for k in untouched} == untouched


# --- --write -----------------------------------------------------------------------------------------

SPEC_WITH_COMMENTS = """\
# my model, tuned by hand once
name: tiny-embeddings   # stays
version: 0.1.0
task: embeddings
source: {source}
compile: {{backend: torchscript, max_length: 64, batch_size: 4}}  # compile comment
serve:
  batch_size: 4     # block style
  truncation: false

# a comment before validate
validate: {{examples: examples.jsonl}}
"""


def test_write_replaces_serve_alone_and_keeps_every_other_line(tmp_path, tiny_model_dir):
    spec_path = write_spec(tmp_path / "m", str(tiny_model_dir))
    text = SPEC_WITH_COMMENTS.format(source=tiny_model_dir)
    spec_path.write_text(text)
    before = load_spec(spec_path)
    [line] = write_tuned(spec_path, config(workers=2, threads=1, batch=16, delay=10))
    after_text = spec_path.read_text()
    kept = [x for x in text.splitlines() if not x.startswith(("serve:", "  batch_size", "  truncation"))]
    assert [x for x in after_text.splitlines() if not x.startswith("serve:")] == kept
    after = load_spec(spec_path)
    assert after.serve.model_dump() == {
        **before.serve.model_dump(),
        "batch_size": 16,
        "max_batch_delay_ms": 10,
        "workers": 2,
        "threads": 1,
        "truncation": False,  # a serve: key the tune does not set keeps its value
    }
    assert after.model_dump(exclude={"serve"}) == before.model_dump(exclude={"serve"})
    assert line in after_text


def test_write_appends_serve_when_the_spec_has_none():
    text = "name: a\nversion: 0.1.0\n# end\n"
    assert with_serve(text, {"batch_size": 8}) == text + "serve: {batch_size: 8}\n"


# --- the chart ---------------------------------------------------------------------------------------


def tune_result(ms, **changes) -> TuneResult:
    """A TuneResult of measurements `ms` (the first chosen and the baseline), other fields fixed."""
    values = {
        "model": "tiny",
        "version": "0.1.0",
        "backend": "torchscript",
        "budget_p95_ms": None,
        "concurrency": 16,
        "requests_origin": "examples.jsonl",
        "request_bodies": 3,
        "machine": "x",
        "load_average": (1.0, 1.0, 1.0),
        "started": "now",
        "duration_s": 10,
        "time_bound_s": 60,
        "measurements": ms,
        "not_measured": [],
        "chosen": ms[0].config,
        "baseline": ms[0].config,
    }
    return TuneResult(**(values | changes))


def test_chart_shows_every_configuration_and_escapes_text():
    ms = [measured(config(batch=8), 250, 90), measured(config(batch=16), 300, 250)]
    result = tune_result(
        ms,
        budget_p95_ms=100,
        requests_origin="requests<script>alert(1)</script>.jsonl",
        chosen_backend="torchscript",
    )
    page = render_chart(result)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert page.count('<tr class="chosen">') == 1 and page.count('<tr class="misses">') == 1
    assert "250.0" in page and "300.0" in page
    assert "3 request bodies from requests&lt;script&gt;" in page


def test_the_frontier_marks_engines_no_faster_closer_engine_beats_and_lists_refused_ones():
    from torchship.tune.frontier import frontier
    from torchship.tune.records import Agreement, BackendStatus

    def status(backend, precision, floor, measure, value, better="higher", refused=None):
        agreement = Agreement(measure=measure, value=value, better=better)
        return BackendStatus(
            backend=backend, precision=precision, floor_rps=floor, agreement=agreement, refused=refused
        )

    statuses = [
        status("torchscript", "fp32", 300.0, "agreement", 1.0),
        status("onnx", "fp32", 400.0, "agreement", 1.0),  # faster and as close: beats torchscript
        status("onnx", "int8-dynamic", 700.0, "flip_rate", 0.01, better="lower"),  # fastest, 0.99
        status("onnx", "int8-static", 900.0, "flip_rate", 0.2, "lower", refused="validate: flip_rate"),
    ]
    served = measured(config(batch=8), 250, 90).model_copy(
        update={"backend": "onnx", "precision": "int8-dynamic"}
    )
    points = {p.label: p for p in frontier(tune_result([served], backends=statuses))}
    # Worked by hand: onnx (400, 1.0) dominates torchscript (300, 1.0); int8-dynamic (700, 0.99) is the
    # fastest accepted one; onnx fp32 is the closest among those at least as fast as it; int8-static is
    # refused (never on the frontier, its point still drawn at 1 - 0.2).
    assert {label: p.on_frontier for label, p in points.items()} == {
        "torchscript": False,
        "onnx": True,
        "onnx int8-dynamic": True,
        "onnx int8-static": False,
    }
    assert points["onnx int8-static"].agreement == pytest.approx(0.8)
    assert points["onnx int8-dynamic"].served_rps == 250 and points["onnx"].served_rps is None
    page = render_chart(tune_result([served], backends=statuses))
    assert page.count('<tr class="frontier">') == 2 and page.count('<tr class="refused">') == 1
    assert "refused: validate: flip_rate" in page and page.count("<circle") == 4


def test_a_tune_json_written_before_pair_tasks_still_reads():
    """tune.json files from before request bodies said texts_origin/texts; bench/serving.py reads them."""
    ms = [measured(config(batch=8), 250, 90)]
    current = tune_result(ms)
    written = json.loads(current.model_dump_json())
    assert written["requests_origin"] == "examples.jsonl" and written["request_bodies"] == 3
    old = {k: v for k, v in written.items() if k not in ("requests_origin", "request_bodies")}
    old.update(texts_origin="texts.txt", texts=5)
    read = TuneResult.model_validate(old)
    assert (read.requests_origin, read.request_bodies, read.chosen) == ("texts.txt", 5, ms[0].config)


# --- the command, against a real TorchServe ----------------------------------------------------------


@pytest.fixture(scope="module")
def own_package(tmp_path_factory, tiny_model_dir):
    """A package of its own: --write edits this spec, which must not make the shared one stale."""
    root = tmp_path_factory.mktemp("tune-package")
    return packaged(write_spec(root / "models" / "tiny", str(tiny_model_dir)), root / "outputs")


def test_tune_refuses_a_stale_package(own_package, tmp_path, monkeypatch):
    spec, settings, _ = own_package
    copy_dir = tmp_path / "stale"
    copy_dir.mkdir()
    stale = copy_dir / "model.yaml"
    stale.write_text(spec.spec_path.read_text().replace("max_length: 64", "max_length: 32"))
    (copy_dir / "examples.jsonl").write_text((spec.spec_path.parent / "examples.jsonl").read_text())
    monkeypatch.setenv("TORCHSHIP_OUTPUTS_DIR", str(settings.outputs_dir))
    result = CliRunner().invoke(app, ["tune", str(stale), "--minutes", "1"])
    assert result.exit_code == 1
    assert "stale" in result.output and "torchship run" in result.output
    assert not (settings.stage_root(spec.name, spec.version) / "tune").exists()


def test_tune_measures_picks_the_best_and_writes_serve(own_package, monkeypatch):
    spec, settings, _ = own_package
    grid = [config(workers=1, threads=1, batch=4, delay=50), config(workers=1, threads=1, batch=1, delay=0)]
    monkeypatch.setattr(tune_command, "sweep_grid", lambda serve, cores: grid)
    monkeypatch.setenv("TORCHSHIP_OUTPUTS_DIR", str(settings.outputs_dir))
    original = spec.spec_path.read_text()
    budget = 60_000  # met by both: the pick must then be the higher recorded throughput
    result = CliRunner().invoke(
        app,
        [
            "tune",
            str(spec.spec_path),
            "--minutes",
            "3",
            "--requests",
            "32",
            "--budget-p95-ms",
            str(budget),
            "--write",
            "--backends",
            "spec",
            "--precisions",
            "spec",
            "--max-tail-ratio",
            "0",  # this test is about the budget; the tail bound has its own
        ],
    )
    assert result.exit_code == 0, result.output
    out_dir = settings.stage_root(spec.name, spec.version) / "tune"
    recorded = json.loads((out_dir / "tune.json").read_text())
    assert [ServeConfig(**m["config"]) for m in recorded["measurements"]] == grid
    assert {m["backend"] for m in recorded["measurements"]} == {"torchscript"}
    for m in recorded["measurements"]:
        assert m["requests"] == 32 and m["failures"] == 0 and m["throughput_rps"] > 0
        assert m["p50_ms"] <= m["p95_ms"] <= m["p99_ms"]
    # Independent of the code under test: the fastest recorded configuration within the budget.
    eligible = [m for m in recorded["measurements"] if m["p95_ms"] <= budget and m["failures"] == 0]
    expected = max(eligible, key=lambda m: m["throughput_rps"])["config"]
    assert recorded["chosen"] == expected
    html = (out_dir / "tune.html").read_text()
    assert html.count('<tr class="chosen">') + html.count('<tr class="meets">') == 2
    # One engine (the spec's), with its in-process floor: the frontier table's one row.
    [engine] = recorded["backends"]
    assert engine["backend"] == "torchscript" and engine["floor_rps"] > 0
    assert html.count('<tr class="frontier">') == 1
    # --write: serve: holds the chosen values; every other line is as it was.
    written = load_spec(spec.spec_path)
    assert (written.serve.batch_size, written.serve.max_batch_delay_ms) == (
        expected["batch_size"],
        expected["max_batch_delay_ms"],
    )
    new_text = spec.spec_path.read_text()
    assert [x for x in new_text.splitlines() if not x.startswith("serve:")] == [
        x for x in original.splitlines() if not x.startswith("serve:")
    ]
    assert f"batch_size: {expected['batch_size']}" in result.output
    assert "compile: {backend: torchscript" in result.output


def test_tune_compares_engines_gated_first_refuses_reduced_precision_the_task_measure_refuses(
    tmp_path, tiny_model_dir, monkeypatch
):
    """onnx is compiled, gated and packaged in a tree of its own, then measured beside the spec's torchscript;
    neuron cannot compile on this CPU and torchscript has no int8, so those are said, not measured; onnx
    int8-dynamic fails the spec's precision limit (a mean cosine of 1 to the source: only exact answers), is
    retried with its feed-forward outputs in fp32, fails again: both refused, neither packaged, both on the
    frontier table with their in-process floor and the measure that refused them."""
    spec_path = write_spec(tmp_path / "models" / "tiny", str(tiny_model_dir))
    strict = "validate: {examples: examples.jsonl, atol: 1.0e-5, rtol: 1.0e-4, precision_limits: {min_mean_cosine: 1.0}}"
    spec_path.write_text(spec_path.read_text().replace(
        "validate: {examples: examples.jsonl, atol: 1.0e-5, rtol: 1.0e-4}", strict
    ))  # fmt: skip
    spec, settings, _ = packaged(spec_path, tmp_path / "out")
    grid = [config(workers=1, threads=1, batch=4, delay=5)]
    monkeypatch.setattr(tune_command, "sweep_grid", lambda serve, cores: grid)
    monkeypatch.setenv("TORCHSHIP_OUTPUTS_DIR", str(settings.outputs_dir))
    args = ["tune", str(spec.spec_path), "--minutes", "3", "--requests", "32", "--backends", "onnx,neuron"]
    args += ["--precisions", "fp32,int8-dynamic", "--max-tail-ratio", "0"]
    result = CliRunner().invoke(app, [*args, "--write"])
    assert result.exit_code == 0, result.output
    root = settings.stage_root(spec.name, spec.version)
    recorded = json.loads((root / "tune" / "tune.json").read_text())
    assert [(m["backend"], m["precision"]) for m in recorded["measurements"]] == [
        ("torchscript", "fp32"),
        ("onnx", "fp32"),
    ]
    statuses = {(b["backend"], b["precision"], tuple(b["keep_fp32"])): b for b in recorded["backends"]}
    refused = {key: b["refused"] for key, b in statuses.items() if b["refused"]}
    assert refused[("neuron", "fp32", ())].startswith("compile:")
    for key in (("onnx", "int8-dynamic", ()), ("onnx", "int8-dynamic", ("ffn-output",))):
        assert refused[key].startswith("validate:") and "mean_cosine" in refused[key]
        agreement = statuses[key]["agreement"]
        assert agreement["measure"] == "mean_cosine" and agreement["value"] < 1.0
        assert agreement["refused_by"] == "min_mean_cosine 1"
        assert statuses[key]["floor_rps"] > 0  # its compiled model still ran in-process
    assert not list((root / "tune-backends").glob("onnx-int8-dynamic*/**/*.mar"))  # never packaged
    assert "torchscript int8-dynamic: not tried (torchscript: torchscript does not quantize" in result.output
    assert "not measured: neuron: compile:" in result.output
    assert "not measured: onnx int8-dynamic (ffn-output fp32): validate:" in result.output
    for key in (("torchscript", "fp32", ()), ("onnx", "fp32", ())):
        assert statuses[key]["agreement"]["value"] == 1.0 and statuses[key]["floor_rps"] > 0
    html = (root / "tune" / "tune.html").read_text()
    assert html.count('<tr class="refused">') == 3  # neuron (no floor, no agreement) and the two int8
    # The other backend's package lives beside the spec's outputs, never in them.
    onnx_record = json.loads(
        (root / "tune-backends" / "onnx" / spec.name / spec.version / "compile" / "stage.json").read_text()
    )
    assert onnx_record["details"]["backend"] == "onnx"
    assert json.loads((root / "compile" / "stage.json").read_text())["details"]["backend"] == "torchscript"
    fastest = max(recorded["measurements"], key=lambda m: m["throughput_rps"])
    assert recorded["chosen_backend"] == fastest["backend"]
    # --write: compile.backend follows the chosen engine; only serve: and compile: lines change.
    assert load_spec(spec.spec_path).compile.backend == fastest["backend"]
    assert f"compile: {{backend: {fastest['backend']}" in result.output


def test_tune_names_an_unknown_backend(tmp_path, tiny_model_dir):
    spec_path = write_spec(tmp_path / "m", str(tiny_model_dir))
    result = CliRunner().invoke(app, ["tune", str(spec_path), "--backends", "tensorrt"])
    assert result.exit_code != 0
    assert "unknown backend 'tensorrt'" in result.output and "torchscript" in result.output


def test_texts_file_takes_plain_lines_or_json_lines_and_names_a_bad_line(tmp_path):
    from torchship.tasks import task_definition

    embeddings, reranking = task_definition("embeddings"), task_definition("reranking")
    plain = tmp_path / "plain.txt"
    plain.write_text("first text\n\n  second text\n")
    assert tune_command.read_requests(plain, embeddings) == [
        {"text": "first text"},
        {"text": "  second text"},
    ]
    jsonl = tmp_path / "texts.jsonl"
    jsonl.write_text('{"text": "from json"}\nplain again\n')
    assert tune_command.read_requests(jsonl, embeddings) == [{"text": "from json"}, {"text": "plain again"}]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('ok\n{"txt": "typo"}\n')
    with pytest.raises(
        SpecError, match=r"bad.jsonl:2: not a request that a embeddings model accepts: .*\"text\""
    ):
        tune_command.read_requests(bad, embeddings)
    with pytest.raises(SpecError, match="does not exist"):
        tune_command.read_requests(tmp_path / "missing.txt", embeddings)
    # A pair task's lines are request bodies; a plain line is not one.
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"query": "q", "texts": ["a", "b"]}\nplain\n')
    with pytest.raises(SpecError, match=r"pairs.jsonl:2: a reranking request must be a JSON object"):
        tune_command.read_requests(pairs, reranking)
    pairs.write_text('{"query": "q", "texts": ["a", "b"]}\n')
    assert tune_command.read_requests(pairs, reranking) == [{"query": "q", "texts": ["a", "b"]}]


# --- pair tasks: request bodies, not texts -----------------------------------------------------------

RANKINGS = [
    {"query": "where does the cat sit ?", "texts": ["the cat sat on the mat .", "hello world"]},
    {"query": "who lives in paris ?", "texts": ["john lives in paris .", "a great movie", "ok", "mary"]},
]
LONG_CONTEXT = " ".join(["john lives in paris and the cat sat on the mat ."] * 12)  # several windows of 64
QUESTIONS = [
    {"question": "where does john live ?", "context": "john lives in paris ."},
    {"question": "where did the cat sit ?", "context": LONG_CONTEXT},
]


def _pair_spec(task: str, root):
    if task == "reranking":
        model_dir = save_tiny_cross_encoder(root / "model")
    else:
        model_dir = save_tiny_qa(root / "model", "roberta")
    spec_path = write_spec(root / "models" / "pair", str(model_dir), name=f"tiny-{task}", task=task)
    bodies = RANKINGS if task == "reranking" else QUESTIONS
    # The spec's examples are request bodies of its task (write_spec writes text ones).
    (spec_path.parent / "examples.jsonl").write_text("".join(json.dumps(b) + "\n" for b in bodies))
    return spec_path, bodies


@pytest.mark.parametrize(
    ("task", "from_file"), [("reranking", False), ("question-answering", True)], ids=["reranking", "qa"]
)
def test_tune_measures_a_pair_task_with_its_request_bodies(task, from_file, tmp_path, monkeypatch):
    """A cross-encoder is loaded with the spec's examples, a QA model with --requests-file (a long context
    among them, split in windows): every measured request answers 200, and the serve: line is printed."""
    spec_path, bodies = _pair_spec(task, tmp_path)
    spec, settings, _ = packaged(spec_path, tmp_path / "outputs")
    grid = [config(workers=1, threads=1, batch=4, delay=5)]
    monkeypatch.setattr(tune_command, "sweep_grid", lambda serve, cores: grid)
    monkeypatch.setenv("TORCHSHIP_OUTPUTS_DIR", str(settings.outputs_dir))
    args = ["tune", str(spec.spec_path), "--minutes", "2", "--requests", "24", "--backends", "spec"]
    args += ["--precisions", "spec", "--max-tail-ratio", "0"]
    origin = spec.spec_path.parent / "examples.jsonl"
    if from_file:
        origin = tmp_path / "requests.jsonl"
        origin.write_text("".join(json.dumps(b) + "\n" for b in reversed(bodies)))
        args += ["--requests-file", str(origin)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    recorded = json.loads((settings.stage_root(spec.name, spec.version) / "tune" / "tune.json").read_text())
    assert recorded["requests_origin"].endswith(origin.name) and recorded["request_bodies"] == len(bodies)
    [m] = recorded["measurements"]
    # Every measured request answered 200: a refused body would be a failure, never throughput.
    assert m["requests"] == 24 and m["failures"] == 0 and m["throughput_rps"] > 0
    assert f"{len(bodies)} request bodies from" in result.output
    [serve] = [line.strip() for line in result.output.splitlines() if line.strip().startswith("serve:")]
    assert yaml.safe_load(serve)["serve"] == {
        **spec.serve.model_dump(mode="json", exclude_defaults=True),
        "batch_size": 4,
        "max_batch_delay_ms": 5,
        "workers": 1,
        "threads": 1,
    }


def test_requests_file_keeps_its_first_name():
    """--texts, from when every task took texts, still names the requests file (scripts keep working)."""
    result = CliRunner().invoke(app, ["tune", "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 0
    [line] = [x for x in result.output.splitlines() if "--requests-file" in x]
    assert "--texts" in line and "request bodies" in line
