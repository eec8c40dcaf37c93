"""Reading YAML fast without reading it differently: documents without aliases are built by the
loader's plain path; whatever the text, that gives what the general constructor gives, or the
same error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from servicegraph.manifest_yaml import (
    MAX_FILE_BYTES,
    ManifestError,
    _load_all,
    _ManifestLoader,
    read_text,
)

KEYS = st.one_of(st.text(max_size=8), st.integers(-5, 5), st.booleans(), st.none(), st.floats(0, 2))
VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=4),
    max_leaves=25,
)
ODD_DOCUMENTS = [
    "base: &b {a: 1}\nmerged: {<<: *b, c: 2}\n",  # aliases: the general path
    "merged: {<<: {a: 1}, c: 2}\n",  # a merge key without an alias
    "when: 2026-01-01\nat: 2026-01-01T10:00:00Z\n",
    "flags: [yes, no, on, off, true, False]\nnumbers: [0x1F, 0o17, 1_000, 1:20, .5, -.inf]\n",
    "tagged: !!str 123\nfloat: !!float 1\nint: !!int '7'\n",
    "? [a, b]\n: complex key\n",
    "? {a: 1}\n: mapping key\n",
    "blob: !!binary aGVsbG8=\n",
    "set: !!set {a, b}\n",
    "odd: !custom thing\n",
    "1: one\n2.5: two and a half\ntrue: yes\n~: nothing\n",
    "ordered: !!omap [{a: 1}, {b: 2}]\n",
    "- a\n- [b, {c: d}]\n- {e: [f]}\n",
    "plain\n",
    "---\n---\nsecond: doc\n...\n",
]


def general(text: str) -> list[Any]:
    """The reference: every document through the general constructor."""
    loader = _ManifestLoader(text)
    loader.may_alias = True
    try:
        documents = []
        while loader.check_data():
            documents.append(loader.get_data())
        return documents
    finally:
        loader.dispose()


def outcome(read: Any, text: str) -> tuple[str, Any]:
    try:
        return "documents", list(read(text))
    except yaml.YAMLError as error:
        return "error", (type(error).__name__, str(error))


def test_keys_one_and_true_stay_two_keys() -> None:
    """As sigs.k8s.io/yaml reads it: keys become strings, and 1 is not true."""
    text = "1: one\ntrue: yes\n"
    expected = [{"1": "one", "true": True}]
    assert list(_load_all(text)) == general(text) == expected
    assert general("a: &x 1\nb: *x\n1: one\ntrue: yes\n") == [
        {"a": 1, "b": 1, "1": "one", "true": True}
    ]


@pytest.mark.parametrize("text", ODD_DOCUMENTS)
def test_odd_documents_read_as_the_general_constructor_reads_them(text: str) -> None:
    assert outcome(_load_all, text) == outcome(general, text)


@settings(max_examples=300, deadline=None)
@given(VALUES, st.sampled_from([True, False, None]))
def test_any_document_reads_as_the_general_constructor_reads_it(
    value: Any, flow: bool | None
) -> None:
    text = yaml.safe_dump_all([value, {"next": value}], default_flow_style=flow)
    assert outcome(_load_all, text) == outcome(general, text)


# Scalars that resolve to each tag YAML 1.1 knows, and some that nearly do.
SCALARS = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", "~", "null", "yes", "No", "on", "0x1F", "1_000", "1:20", ".5", "-.inf",
                     ".NaN", "2026-01-01", "2026-01-01T10:00:00Z", "<<", "=", "+1", "0o17"]),
)  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(SCALARS, st.tuples(st.booleans(), st.booleans()))
def test_a_scalar_resolves_as_pyyaml_resolves_it_cached_or_not(
    value: str, implicit: tuple[bool, bool]
) -> None:
    expected = yaml.resolver.Resolver().resolve(yaml.ScalarNode, value, implicit)
    loader = _ManifestLoader("")
    try:
        assert loader.resolve(yaml.ScalarNode, value, implicit) == expected
        assert loader.resolve(yaml.ScalarNode, value, implicit) == expected  # from the cache
    finally:
        loader.dispose()


def test_a_file_is_read_whole_up_to_the_cap_and_refused_past_it(tmp_path: Path) -> None:
    """Read in growing pieces, a file at the cap comes back whole, byte for byte."""
    line = "# a manifest line of sixty-four bytes, no more and no less....\n"
    text = line * (MAX_FILE_BYTES // len(line)) + "#" * (MAX_FILE_BYTES % len(line))
    at_cap = tmp_path / "at-cap.yaml"
    at_cap.write_text(text, encoding="utf-8")
    assert read_text(at_cap) == text
    past_cap = tmp_path / "past-cap.yaml"
    past_cap.write_text(text + "#", encoding="utf-8")
    with pytest.raises(ManifestError, match="MiB is more than the 16 MiB"):
        read_text(past_cap)
    small = tmp_path / "small.yaml"
    small.write_text("kind: List\n", encoding="utf-8")
    assert read_text(small) == "kind: List\n"
