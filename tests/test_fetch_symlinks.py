"""fetch with symlinks in the source tree: it hashes exactly what it copies; links out of the tree or
dangling ones are clear errors, and the stage then writes nothing."""

import hashlib
import json
import os
import shutil

import pytest

from conftest import run_stages
from tiny_models import write_spec
from torchship.errors import SourceError
from torchship.spec import load_spec


def _source(tmp_path, tiny_model_dir):
    source = tmp_path / "model"
    shutil.copytree(tiny_model_dir, source)
    return source


def _fetch(tmp_path, settings, source):
    spec = load_spec(write_spec(tmp_path / "spec", str(source)))
    return spec, run_stages(spec, settings, until="fetch")


def _fetch_dir(settings, spec):
    return settings.stage_root(spec.name, spec.version) / "fetch"


def _independent_tree_hash(root):
    """sha256 over (relative path, bytes) of every regular file as the copy has it: no links to follow."""
    table = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            assert not os.path.islink(path), f"the copy holds a link: {path}"
            with open(path, "rb") as f:
                table[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return json.dumps(table, sort_keys=True)


def test_links_inside_the_tree_are_copied_as_files_and_hashed_as_copied(tmp_path, settings, tiny_model_dir):
    source = _source(tmp_path, tiny_model_dir)
    (source / "extra").mkdir()
    (source / "extra" / "notes.txt").write_text("inside")
    (source / "notes-link.txt").symlink_to("extra/notes.txt")
    (source / "extra-link").symlink_to("extra", target_is_directory=True)
    spec, [outcome] = _fetch(tmp_path, settings, source)
    assert outcome.status == "ran", outcome.error
    model = _fetch_dir(settings, spec) / "model"
    assert (model / "notes-link.txt").read_text() == "inside"
    assert (model / "extra-link" / "notes.txt").read_text() == "inside"
    copied = _independent_tree_hash(model)

    # The input hash is the copy's content: change the bytes behind the link and it changes (re-runs).
    (source / "extra" / "notes.txt").write_text("changed behind the link")
    spec, [again] = _fetch(tmp_path, settings, source)
    assert again.status == "ran"
    assert again.record["inputs"]["source"] != outcome.record["inputs"]["source"]
    assert _independent_tree_hash(_fetch_dir(settings, spec) / "model") != copied
    assert (_fetch_dir(settings, spec) / "model" / "notes-link.txt").read_text() == "changed behind the link"


def test_repository_files_are_neither_copied_nor_hashed(tmp_path, settings, tiny_model_dir):
    source = _source(tmp_path, tiny_model_dir)
    spec, [first] = _fetch(tmp_path, settings, source)
    (source / ".gitattributes").write_text("*.safetensors filter=lfs\n")
    _, [second] = _fetch(tmp_path, settings, source)
    # .gitattributes is not copied, so it does not change the fetch's input either: skipped.
    assert second.status == "skipped"
    assert not (_fetch_dir(settings, spec) / "model" / ".gitattributes").exists()
    assert first.record["inputs"]["source"] == second.record["inputs"]["source"]


@pytest.mark.parametrize("kind", ["file", "directory"])
def test_a_link_out_of_the_tree_is_a_clear_error(tmp_path, settings, tiny_model_dir, kind):
    source = _source(tmp_path, tiny_model_dir)
    outside = tmp_path / "secrets"
    outside.mkdir()
    (outside / "id_rsa").write_text("PRIVATE KEY")
    if kind == "file":
        (source / "vocab-extra.txt").symlink_to(outside / "id_rsa")
    else:
        (source / "assets").symlink_to(outside, target_is_directory=True)
    spec, [outcome] = _fetch(tmp_path, settings, source)
    assert outcome.status == "failed"
    error = outcome.error
    assert isinstance(error, SourceError)
    assert "points outside the model directory" in error.message and str(outside) in error.message
    assert "cp -rL" in error.hint
    assert not _fetch_dir(settings, spec).exists()


def test_a_dangling_link_is_a_clear_error(tmp_path, settings, tiny_model_dir):
    source = _source(tmp_path, tiny_model_dir)
    (source / "tokenizer-extra.json").symlink_to(tmp_path / "gone.json")
    spec, [outcome] = _fetch(tmp_path, settings, source)
    assert outcome.status == "failed"
    assert isinstance(outcome.error, SourceError)
    assert "tokenizer-extra.json" in outcome.error.message and "dangling" in outcome.error.message
    assert not _fetch_dir(settings, spec).exists()


def test_a_link_loop_is_a_clear_error(tmp_path, settings, tiny_model_dir):
    source = _source(tmp_path, tiny_model_dir)
    (source / "sub").mkdir()
    (source / "sub" / "up").symlink_to("..", target_is_directory=True)
    _, [outcome] = _fetch(tmp_path, settings, source)
    assert outcome.status == "failed"
    assert isinstance(outcome.error, SourceError) and "loops back" in outcome.error.message
