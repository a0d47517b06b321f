"""data_recipes.corpus.extract_archive, the one tarball extractor of the recipes (AISHELL-1, FLEURS):
whole archives through tarfile's "data" filter, or chosen files flat; reruns skip what is there."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from data_recipes.corpus import Extraction, extract_archive, extract_archives, parallel_map


def _tar(path: Path, members: dict[str, bytes], mode: str = "w:gz") -> Path:
    """A tarball of the given (member name -> bytes) files, names taken as they are (even ../x)."""
    with tarfile.open(path, mode) as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_whole_archive_keeps_its_paths_and_a_marker_skips_it_next_time(tmp_path):
    archive = _tar(tmp_path / "S0002.tar.gz", {"train/S0002/a.wav": b"aa", "train/S0002/b.wav": b"bbb"})
    out = tmp_path / "out"
    marker = out / ".extracted" / archive.name
    assert extract_archive(archive, out, done_marker=marker) == 2
    assert _files(out) == {
        ".extracted/S0002.tar.gz": b"",
        "train/S0002/a.wav": b"aa",
        "train/S0002/b.wav": b"bbb",
    }

    (out / "train/S0002/a.wav").write_bytes(b"changed")  # with the marker, the archive is not reopened
    assert extract_archive(archive, out, done_marker=marker) == 0
    assert (out / "train/S0002/a.wav").read_bytes() == b"changed"
    marker.unlink()  # without it, a file of another size is written again and one of the same size kept
    os.utime(out / "train/S0002/b.wav", (1_000_000, 1_000_000))
    assert extract_archive(archive, out, done_marker=marker) == 1
    assert (out / "train/S0002/a.wav").read_bytes() == b"aa"
    assert (out / "train/S0002/b.wav").stat().st_mtime == 1_000_000
    assert not list(out.rglob("*.part"))


def test_chosen_names_are_written_flat_whatever_the_member_path(tmp_path):
    archive = _tar(
        tmp_path / "dev.tar",
        {"dev/1.wav": b"one", "dev/2.wav": b"two", "../../escape/3.wav": b"three"},
        mode="w",
    )
    out = tmp_path / "out"
    assert extract_archive(archive, out, frozenset({"1.wav", "3.wav"})) == 2
    assert _files(out) == {"1.wav": b"one", "3.wav": b"three"}  # ../ is dropped with the folders
    assert not (tmp_path / "escape").exists()
    assert extract_archive(archive, out, frozenset({"1.wav", "3.wav"})) == 0


@pytest.mark.parametrize("name", ["../outside.wav", "/etc/lalm-absolute.wav"])
def test_a_whole_archive_refuses_members_that_leave_the_destination(tmp_path, name):
    archive = _tar(tmp_path / "bad.tar.gz", {"ok.wav": b"ok", name: b"x"})
    out = tmp_path / "out"
    marker = out / ".extracted" / archive.name
    if name.startswith("/"):  # the data filter strips the leading slash: it lands inside
        assert extract_archive(archive, out, done_marker=marker) == 2
        assert (out / name.lstrip("/")).read_bytes() == b"x"
        return
    with pytest.raises(tarfile.FilterError):
        extract_archive(archive, out, done_marker=marker)
    assert not (tmp_path / "outside.wav").exists()
    assert not marker.exists()  # an archive that failed is not marked done


def test_several_archives_in_worker_processes(tmp_path):
    jobs = [
        Extraction(_tar(tmp_path / f"{k}.tar.gz", {f"{k}/x.wav": bytes([k]) * (k + 1)}), tmp_path / "out")
        for k in range(3)
    ]
    assert extract_archives(jobs, num_workers=2) == 3
    assert _files(tmp_path / "out") == {f"{k}/x.wav": bytes([k]) * (k + 1) for k in range(3)}
    assert extract_archives(jobs, num_workers=1) == 0
    assert parallel_map(abs, [-2, 3, -4], num_workers=2) == [2, 3, 4]
    assert parallel_map(abs, [], num_workers=4) == []
