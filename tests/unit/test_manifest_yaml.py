"""Reading YAML fast without reading it differently: documents without aliases are built by the
loader's plain path; whatever the text, that gives what the general constructor gives, or the
same error."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from servicegraph.manifest_yaml import _load_all, _ManifestLoader

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
