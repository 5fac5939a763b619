"""Atomic writes: one helper, unique temporary names, nothing half-written."""

import os
import threading

import pytest

from roberta_from_scratch.files import atomic_write, fsync_tree


def test_atomic_write_text_bytes_and_writer(tmp_path):
    assert atomic_write(tmp_path / "a" / "b.txt", "é\n").read_text(encoding="utf-8") == "é\n"
    assert atomic_write(tmp_path / "c.bin", b"\x00\x01").read_bytes() == b"\x00\x01"
    atomic_write(tmp_path / "d.txt", lambda p: p.write_text("by a writer"))
    assert (tmp_path / "d.txt").read_text() == "by a writer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "c.bin", "d.txt"]  # no temporary file left
    fsync_tree(tmp_path)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    """Catches: a crash while writing that leaves a half-written target, or a temporary file behind."""
    target = atomic_write(tmp_path / "model.txt", "old")

    def crash(path):
        path.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, crash)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["model.txt"]


def test_two_writers_never_share_a_temporary_file(tmp_path):
    """Catches: a fixed `.tmp` name, with which two concurrent writers of one file interleave into a mixture."""
    target = tmp_path / "config.json"
    texts = [str(i) * 200_000 for i in range(8)]
    threads = [threading.Thread(target=atomic_write, args=(target, t)) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert target.read_text() in texts and os.listdir(tmp_path) == ["config.json"]


def test_written_files_follow_the_umask(tmp_path):
    """Catches: mkstemp's 0600 leaking into saved models (unreadable to a group sharing a run folder)."""
    mask = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "x.txt", "x")
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644
