"""Atomic writes: one helper, unique temporary names, nothing half-written."""

import os

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
    """Catches: a fixed `.tmp` name, with which a second writer of the same file (another process, or a save
    started while one is in progress) writes into the first one's temporary file."""
    target, seen = tmp_path / "config.json", []

    def writer(text):
        def write(tmp):
            seen.append(tmp)
            if len(seen) == 1:  # a second writer of the same file while the first is writing
                atomic_write(target, writer("inner"))
            tmp.write_text(text)
        return write

    atomic_write(target, writer("outer"))
    assert seen[0] != seen[1], "both writers used the same temporary file"
    assert target.read_text() == "outer" and os.listdir(tmp_path) == ["config.json"]


def test_written_files_follow_the_umask(tmp_path):
    """Catches: mkstemp's 0600 leaking into saved models (unreadable to a group sharing a run folder)."""
    mask = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "x.txt", "x")
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_a_writer_that_replaces_the_file_still_gets_the_umask_mode(tmp_path, umask):
    """Catches: a saved model.safetensors left at mode 0600 (safetensors' writer replaces the temporary file with a
    new one of its own, mode 0600, after the mode was set)."""
    import torch
    from safetensors.torch import save_file

    mask = os.umask(umask)
    try:
        path = atomic_write(tmp_path / "model.safetensors", lambda tmp: save_file({"w": torch.zeros(2)}, str(tmp)))
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_writing_never_changes_the_umask_that_other_threads_see(tmp_path, monkeypatch):
    """Catches: reading the umask by setting it to 0 for a moment (os.umask returns the old value only that way),
    during which a file another thread creates gets mode 0666."""
    calls = []
    real = os.umask
    monkeypatch.setattr(os, "umask", lambda mask: calls.append(mask) or real(mask))
    atomic_write(tmp_path / "a.txt", "a")
    atomic_write(tmp_path / "b.txt", lambda tmp: tmp.write_text("b"))
    assert calls == []
