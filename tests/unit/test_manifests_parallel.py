"""Reading manifests on several processes gives what reading on one gives: the same objects,
problems and origins in the same order, and the same error for a file that does not read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from servicegraph.manifest_yaml import ManifestError, split_documents
from servicegraph.manifests import ManifestSet, _pieces, load
from tests.unit.test_cli import API, sdep


def mixed(count: int) -> list[dict[str, Any]]:
    """Valid and refused objects, duplicates, someone else's kinds, Lists and a ServiceGraph."""
    docs: list[dict[str, Any]] = []
    for i in range(count):
        docs.append(sdep(f"svc-{i}", f"svc-{i + 1}", f"svc-{i + 2}"))
        if i % 7 == 0:
            docs.append(sdep(f"bad-{i}", "x", tier="urgent"))
        if i % 11 == 0:
            docs.append(sdep(f"svc-{i}", "again"))  # a duplicate
        if i % 13 == 0:
            docs.append({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}})
        if i % 17 == 0:
            docs.append({"apiVersion": "v1", "kind": "List", "items": [sdep(f"listed-{i}", "a")]})
    docs.append({"apiVersion": API, "kind": "ServiceGraph", "metadata": {"name": "g"}, "spec": {}})
    return docs


def summary(manifests: ManifestSet) -> dict[str, Any]:
    return {
        "dependencies": [d.model_dump(mode="json") for d in manifests.dependencies],
        "graphs": [g.model_dump(mode="json") for g in manifests.graphs],
        "problems": [str(p) for p in manifests.problems],
        "origins": {str(key): str(path) for key, path in manifests.origins.items()},
    }


def both_ways(*paths: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    return summary(load(paths)), summary(load(paths, workers=2, parallel_from=0))


def test_one_file_cut_into_pieces_reads_as_one(tmp_path: Path) -> None:
    path = tmp_path / "all.yaml"
    path.write_text(yaml.safe_dump_all(mixed(300)))
    assert len(_pieces([path], 2, 0) or []) > 2, "the file is cut"
    alone, shared = both_ways(path)
    assert shared == alone
    assert len(alone["dependencies"]) > 300 and len(alone["problems"]) > 40


def test_a_folder_of_files_reads_as_on_one_process(tmp_path: Path) -> None:
    for i, doc in enumerate(mixed(120)):
        (tmp_path / f"{i:04d}.yaml").write_text(yaml.safe_dump(doc))
    (tmp_path / "json.json").write_text(json.dumps(sdep("from-json", "a")))
    alone, shared = both_ways(tmp_path)
    assert shared == alone
    assert any("also defined in" in problem for problem in alone["problems"])


def message(paths: tuple[Path, ...], workers: int) -> str:
    with pytest.raises(ManifestError) as raised:
        load(paths, workers=workers, parallel_from=0)
    return str(raised.value)


@pytest.mark.parametrize(
    "broken",
    [
        'a: "a quoted scalar\n---\nthat runs over a document start"\n',  # the pieces read alone
        "a: [unclosed\n",
        "kind: List\napiVersion: v1\nitems: 5\n",
    ],
)
def test_a_broken_document_gives_the_files_own_error(tmp_path: Path, broken: str) -> None:
    docs = [yaml.safe_dump(doc) for doc in mixed(200)]
    docs.insert(len(docs) // 2, broken)
    path = tmp_path / "all.yaml"
    path.write_text("---\n".join(docs))
    expected = message((path,), 1)
    assert str(path) in expected
    assert message((path,), 2) == expected


def test_a_broken_file_among_many_gives_its_error(tmp_path: Path) -> None:
    for i, doc in enumerate(mixed(60)):
        (tmp_path / f"{i:04d}.yaml").write_text(yaml.safe_dump(doc))
    (tmp_path / "0030.yaml").write_text("a: [unclosed\n")
    assert message((tmp_path,), 2) == message((tmp_path,), 1)


def test_split_documents_cuts_where_documents_start() -> None:
    text = "".join(f"---\nname: n{i}\nnote: |\n  ---not a start\n" for i in range(100))
    pieces = split_documents(text, 4)
    assert "".join(pieces) == text
    assert 1 < len(pieces) <= 4
    assert all(piece.startswith("---\n") for piece in pieces)
    assert [doc["name"] for piece in pieces for doc in yaml.safe_load_all(piece)] == [
        f"n{i}" for i in range(100)
    ]


def test_a_text_with_a_directive_is_not_cut() -> None:
    text = "%YAML 1.1\n---\na: 1\n" + "---\nb: 2\n" * 50
    assert split_documents(text, 4) == [text]
