"""Property-based tests: parameter coercion round-trips, and graph building on random chains."""

from __future__ import annotations

import json
import tempfile
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lokki_sam import flow, run_flow, step
from lokki_sam.errors import FlowDefinitionError, ParamError
from lokki_sam.graph import MapBlock
from lokki_sam.params import Param, coerce, resolve_params

json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20)


@given(st.integers(-(10**12), 10**12))
def test_int_from_cli_text_and_json_agree(value: int) -> None:
    assert coerce(str(value), int) == value
    assert coerce(value, int) == value


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float_from_text_round_trips(value: float) -> None:
    assert coerce(repr(value), float) == value


@given(st.lists(st.integers(-1000, 1000), max_size=20))
def test_list_of_int_from_json_text_and_from_comma_text(values: list[int]) -> None:
    assert coerce(json.dumps(values), list[int]) == values
    if values:
        assert coerce(",".join(map(str, values)), list[int]) == values


@given(st.dictionaries(st.text(min_size=1, max_size=8), st.floats(allow_nan=False, allow_infinity=False), max_size=8))
def test_dict_from_json_text(values: dict[str, float]) -> None:
    assert coerce(json.dumps(values), dict[str, float]) == values


@given(st.text(max_size=30))
def test_bool_accepts_only_known_words(text: str) -> None:
    known = {"true", "1", "yes", "y", "on", "false", "0", "no", "n", "off"}
    if text.strip().lower() in known:
        assert coerce(text, bool) is (text.strip().lower() in {"true", "1", "yes", "y", "on"})
    else:
        with pytest.raises(ValueError):
            coerce(text, bool)


@given(st.text(max_size=12).filter(lambda t: t.strip().lstrip("+-").isdigit() is False))
def test_ill_typed_int_is_a_param_error_naming_the_parameter(text: str) -> None:
    try:
        int(text)
    except ValueError:
        pass
    else:  # some unicode digits parse; those are fine
        return
    with pytest.raises(ParamError) as info:
        resolve_params((Param("limit", int, 3),), {"limit": text}, where="flow 'f'")
    assert "limit" in info.value.render() and "flow 'f'" in info.value.render()


@given(st.dictionaries(st.sampled_from(["a", "b", "c", "zz"]), json_scalars, max_size=4))
def test_resolve_params_refuses_exactly_the_unknown_names(given_values: dict[str, Any]) -> None:
    params = (Param("a", Any, 1), Param("b", Any, 2), Param("c", Any, 3))
    if "zz" in given_values:
        with pytest.raises(ParamError, match="zz"):
            resolve_params(params, given_values, where="here")
    else:
        resolved = resolve_params(params, given_values, where="here")
        assert resolved == {"a": 1, "b": 2, "c": 3} | given_values


# --------------------------------------------------------------------- random chains


@step
def src(n: int = 4) -> list[int]:
    return list(range(n))


@step
def plus(x: Any) -> Any:
    return x + 1 if isinstance(x, int) else [v + 1 for v in x]


@step
def summed(xs: list[int]) -> Any:
    return sum(xs)


@step
def spread(x: int) -> list[int]:
    return list(range(x % 5 + 1))


ops = st.lists(st.sampled_from(["next", "map", "agg"]), max_size=7)


def _reference(chain_ops: list[str], n: int) -> Any:
    """Evaluate a chain with plain Python, mirroring the documented semantics."""
    value: Any = list(range(n))
    in_map = False
    for op in chain_ops:
        if op == "map":
            in_map = True
            value = [x + 1 for x in value]
        elif op == "next":
            value = [x + 1 for x in value] if in_map else plus.func(value)
        else:
            in_map = False
            value = spread.func(sum(value))
    return value


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops, st.integers(0, 6))
def test_random_chains_are_valid_or_refused_clearly(chain_ops: list[str], n: int) -> None:
    def body(n: int = 3) -> Any:
        chain = src(n=n)
        for op in chain_ops:
            if op == "map":
                chain = chain.map(plus)
            elif op == "next":
                chain = chain.next(plus)
            else:
                chain = chain.agg(summed).next(spread)
        return chain

    depth, valid, maps_opened = 0, True, 0
    for op in chain_ops:
        if op == "map":  # on an open map it extends the item chain, like .next()
            maps_opened += depth == 0
            depth = 1
        elif op == "agg":
            valid &= depth == 1
            depth = 0
    # `plus` on a whole list only works on lists of ints; the reference mirrors that.
    try:
        built = flow(body)
    except FlowDefinitionError as exc:
        assert not valid, exc.render()
        assert "map" in exc.render()
        return
    assert valid
    maps = [s for s in built.graph.stages if isinstance(s, MapBlock)]
    assert len(maps) == maps_opened
    with tempfile.TemporaryDirectory() as tmp:
        assert run_flow(built, {"n": n}, store=tmp).result == _reference(chain_ops, n)
