"""The one cache root and ``laplace-landmarks cache`` (list / clear) on a real cache folder."""

from __future__ import annotations

from pathlib import Path

from laplace_landmarks.cache_dirs import cache_entries, cache_root, clear_cache, onnx_cache_dir
from laplace_landmarks.cli import main


def test_cache_root_honours_its_variable_then_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("LAPLACE_LANDMARKS_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "laplace-landmarks"
    monkeypatch.setenv("LAPLACE_LANDMARKS_CACHE", str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"
    assert onnx_cache_dir() == tmp_path / "mine" / "onnx"


def _fill(root: Path) -> None:
    (root / "onnx").mkdir(parents=True)
    (root / "onnx" / "abc.onnx").write_bytes(b"x" * 1000)
    (root / "300w-val-abc.pt").write_bytes(b"y" * 3000)
    (root / "notes.txt").write_text("not ours")  # never listed nor deleted


def test_cache_lists_and_clears_only_its_own_files(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("LAPLACE_LANDMARKS_CACHE", str(tmp_path))
    _fill(tmp_path)
    assert {(e.kind, e.size) for e in cache_entries()} == {("onnx", 1000), ("crops", 3000)}
    assert main(["cache"]) == 0
    assert "0.0 MB in 2 files" in capsys.readouterr().out
    assert main(["cache", "clear", "--kind", "onnx"]) == 0
    assert not (tmp_path / "onnx" / "abc.onnx").exists()
    assert (tmp_path / "300w-val-abc.pt").exists()
    assert clear_cache() == 3000
    assert (tmp_path / "notes.txt").read_text() == "not ours"
    assert cache_entries() == []
