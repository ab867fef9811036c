"""The packaged .mar is stored uncompressed (TorchServe extracts it at every start; inflating the weights
was a quarter of the demo's cold start), with every entry's bytes as torch-model-archiver wrote them."""

from __future__ import annotations

import zipfile

import pytest

from torchship.archiver.stored import write_stored


def test_the_packaged_mar_is_stored(tiny_package):
    _, _, mar = tiny_package
    with zipfile.ZipFile(mar) as archive:
        infos = archive.infolist()
        assert infos and all(info.compress_type == zipfile.ZIP_STORED for info in infos)
        assert "MAR-INF/MANIFEST.json" in archive.namelist()
        assert archive.testzip() is None  # every entry's CRC holds


def test_stored_copy_keeps_names_bytes_and_modes_and_replaces_only_what_it_is_told(tmp_path):
    source = tmp_path / "a.zip"
    with zipfile.ZipFile(source, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("dir/", b"")
        info = zipfile.ZipInfo("dir/run.sh", date_time=(2020, 1, 2, 3, 4, 6))
        info.external_attr = 0o755 << 16
        archive.writestr(info, b"#!/bin/sh\necho hi\n" * 100)
        archive.writestr("weights.bin", bytes(range(256)) * 4000)
        archive.writestr("config.yaml", b"batchSize: 4\n")
    target = write_stored(source, tmp_path / "out" / "b.zip", {"config.yaml": b"batchSize: 16\n"})
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target) as copy:
        assert copy.namelist() == original.namelist()
        for name in original.namelist():
            expected = b"batchSize: 16\n" if name == "config.yaml" else original.read(name)
            assert copy.read(name) == expected
            assert copy.getinfo(name).compress_type == zipfile.ZIP_STORED
        assert copy.getinfo("dir/run.sh").external_attr == 0o755 << 16
        assert copy.getinfo("dir/run.sh").date_time == (2020, 1, 2, 3, 4, 6)


def test_a_failed_copy_leaves_no_partial_file_and_keeps_the_old_target(tmp_path):
    target = tmp_path / "b.zip"
    target.write_bytes(b"the good one")
    not_a_zip = tmp_path / "bad.zip"
    not_a_zip.write_bytes(b"garbage")
    with pytest.raises(zipfile.BadZipFile):
        write_stored(not_a_zip, target)
    assert target.read_bytes() == b"the good one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.zip", "bad.zip"]
