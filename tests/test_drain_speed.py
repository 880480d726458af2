"""The drain's fast paths give exactly what the plain ones gave.

The worker parses events with msgspec (falling back to ``json.loads``), builds bodies
without the dataclass ``__init__``, and attributes each conversion from the visits of its
own visitor and click. Each must be indistinguishable from the slow path it replaced:
the same values, the same errors (dead letters name them), the same attribution.
"""

from __future__ import annotations

import json
import math
from collections import namedtuple

import pytest
from firsttag import wire
from firsttag.analytics.attribution import attribute_from
from firsttag.events.rows import _Candidates
from hypothesis import given, settings
from hypothesis import strategies as st

TOO_DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(
    "raw",
    [
        b'{"kind":"conversion","data":{"value":1999,"name":"caf\\u00e9 \xc3\xa9"}}',
        b'{"value":123456789012345678901234567890}',  # stays an int (orjson: a float)
        b'{"a":1,"a":2}',  # the last wins
        b'{"v":1.5e300,"w":-0.0,"x":[true,false,null]}',
        b'"\\ud800"',  # a lone surrogate: json.loads takes it
        b"NaN",
        b"[1e400]",  # infinity
        '{"a":"é"}'.encode("utf-16"),  # json.loads detects UTF-16
    ],
)
def test_parse_gives_the_values_of_json_loads(raw: bytes) -> None:
    got, want = wire.parse(raw), json.loads(raw)
    assert repr(got) == repr(want) or (math.isnan(got) and math.isnan(want))
    assert type(got) is type(want)


@pytest.mark.parametrize("raw", [b"not json", b'{"a":1', b'"\xff"', b'{"a":1} x', TOO_DEEP])
def test_parse_refuses_with_the_errors_of_json_loads(raw: bytes) -> None:
    with pytest.raises(Exception) as want:
        json.loads(raw)
    with pytest.raises(type(want.value)) as got:
        wire.parse(raw)
    assert str(got.value) == str(want.value)


@pytest.mark.parametrize("kind", sorted(wire.BODIES))
@pytest.mark.parametrize("which", ["required", "all"])
def test_bodies_are_the_objects_their_constructor_makes(kind: str, which: str) -> None:
    cls = wire.BODIES[kind]
    values = {
        name: f"{name}-value"
        for name, _, required in wire._wire_fields(cls)
        if required or which == "all"
    }
    made = wire.body_from(kind, {wire._camel(name): v for name, v in values.items()})
    assert made == cls(**values) and repr(made) == repr(cls(**values))
    assert hash(made) == hash(cls(**values))
    with pytest.raises(AttributeError):  # still frozen
        made.__setattr__(next(iter(values)), "x")


Visit = namedtuple(
    "Visit",
    "session_id visitor_id click_id created_at channel source medium campaign term content "
    "click_id_type click_id_value landing_page",
)

visits = st.lists(
    st.builds(
        lambda n, v, c, minute, channel: Visit(
            f"s{n}",
            v,
            c,
            f"2026-03-01T12:{minute:02d}:00.000000Z",
            channel,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            "/",
        ),
        st.integers(0, 10_000),
        st.sampled_from(["va", "vb", "vc"]),
        st.sampled_from([None, "ca", "cb"]),
        st.integers(0, 59),
        st.sampled_from([None, "direct", "paid_search", "email"]),
    ),
    max_size=30,
).map(lambda vs: sorted(vs, key=lambda v: v.created_at))


@settings(max_examples=300, deadline=None)
@given(
    visits,
    st.sampled_from([None, "va", "vb", "vz"]),
    st.sampled_from([None, "ca", "cb", "cz"]),
    st.sampled_from([None, "s1", "s2"]),
    st.integers(0, 59),
)
def test_a_conversions_own_visits_attribute_it_as_all_the_batchs_visits_do(
    rows, visitor, click, session, minute
) -> None:
    at = f"2026-03-01T12:{minute:02d}:30.000000Z"
    own = _Candidates(rows).of(visitor, click)
    assert attribute_from(own, 30, at, visitor, session, click) == attribute_from(
        rows, 30, at, visitor, session, click
    )
