"""Which files a folder given to the CLI holds: those with a manifest's suffix, in order,
links to files followed, links to folders not (as `Path.rglob` walks)."""

from __future__ import annotations

from pathlib import Path

from servicegraph.manifests import SUFFIXES, _suffix, files_under


def test_a_folder_lists_its_manifests_as_rglob_does(tmp_path: Path) -> None:
    for name in ("b.yaml", "a-c.yml", "a/b.json", "a/deep/x.yaml", "notes.txt", ".yaml", "a."):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}")
    (tmp_path / "folder.yaml").mkdir()
    (tmp_path / "linked.yaml").symlink_to(tmp_path / "b.yaml")
    (tmp_path / "broken.yaml").symlink_to(tmp_path / "missing.yaml")
    (tmp_path / "loop").symlink_to(tmp_path, target_is_directory=True)
    expected = sorted(p for p in tmp_path.rglob("*") if p.suffix in SUFFIXES and p.is_file())
    assert list(files_under([tmp_path])) == expected
    assert [p.relative_to(tmp_path).as_posix() for p in expected] == [
        "a/b.json",
        "a/deep/x.yaml",
        "a-c.yml",
        "b.yaml",
        "linked.yaml",
    ]


def test_suffix_is_paths() -> None:
    for name in ("a.yaml", ".yaml", "a.", "..yaml", "a.b.json", "plain", "a.YAML"):
        assert _suffix(name) == Path(name).suffix, name
