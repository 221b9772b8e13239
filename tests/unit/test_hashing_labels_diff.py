import json
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import InvalidInput
from domain.hashing import canonical_json, content_hash, parse_json_object
from domain.jsondiff import diff
from domain.labels import (
    child_path,
    is_ancestor_or_self,
    label_to_id,
    path_ids,
    project_label,
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


def test_key_order_and_whitespace_do_not_change_the_hash() -> None:
    a = parse_json_object('{"b": 1, "a": {"y": [1, 2], "x": "é"}}')
    b = parse_json_object('{\n  "a": {"x": "é", "y": [1,2]},\n  "b": 1\n}')
    assert canonical_json(a) == '{"a":{"x":"é","y":[1,2]},"b":1}'
    assert content_hash(a) == content_hash(b)
    assert content_hash(a) != content_hash({**a, "b": 2})
    assert len(content_hash(a)) == 64


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=6))
def test_hash_is_stable_under_reordering_and_reparsing(doc: dict) -> None:
    reordered = dict(reversed(list(doc.items())))
    assert content_hash(doc) == content_hash(reordered)
    assert content_hash(json.loads(json.dumps(doc, indent=3))) == content_hash(doc)


@pytest.mark.parametrize("text", ["", "[1]", '"x"', "{", '{"a": NaN}', '{"a": Infinity}'])
def test_malformed_config_json_is_a_typed_error(text: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_json_object(text)
    assert err.value.field == "content"


def test_labels_round_trip_and_paths() -> None:
    a, b = uuid4(), uuid4()
    assert label_to_id(project_label(a)) == a
    path = child_path(child_path(None, a), b)
    assert path_ids(path) == [a, b]
    assert is_ancestor_or_self(project_label(a), path)
    assert not is_ancestor_or_self(path, project_label(a))
    # a label prefix is not an ancestor
    assert not is_ancestor_or_self(project_label(a)[:-1], path)
    with pytest.raises(InvalidInput):
        label_to_id("team-a")


def test_diff_reports_added_removed_changed() -> None:
    changes = diff({"a": 1, "b": {"c": 2}, "d": 3}, {"a": 1, "b": {"c": 4}, "e": 5})
    assert [(c.path, c.op) for c in changes] == [
        ("$.b.c", "changed"),
        ("$.d", "removed"),
        ("$.e", "added"),
    ]
    assert diff({"x": [1]}, {"x": [1]}) == []
    assert diff({"x": 1}, {"x": 1.0})[0].op == "changed"
