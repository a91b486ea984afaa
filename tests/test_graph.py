"""The flow graph: shapes it builds, and the definition-time errors it raises (message content asserted)."""

from __future__ import annotations

from typing import Any

import pytest

from lokki_sam import Retry, flow, step
from lokki_sam.compile import asl
from lokki_sam.errors import FlowDefinitionError, ParamError
from lokki_sam.graph import Const, MapBlock, Node, ParamRef
from tests.flows import shapes


@step
def src(n: int = 3) -> list[int]:
    return list(range(n))


@step
def one(x: int) -> int:
    return x + 1


@step
def two(x: int) -> int:
    return x * 2


@step
def gather_all(xs: list[int]) -> int:
    return sum(xs)


@step
def no_input() -> int:
    return 1


@step
def needs_k(x: int, k: int) -> int:
    return x + k


def raises(match: str, exc: type[Exception] = FlowDefinitionError) -> Any:
    return pytest.raises(exc, match="(?s)" + match)


# ------------------------------------------------------------------------------ shapes


def test_map_agg_graph_structure() -> None:
    g = shapes.map_agg.graph
    assert [s.id for s in g.stages] == ["numbers", "map-square", "total"]
    block = g.get("map-square")
    assert isinstance(block, MapBlock)
    assert block.source == "numbers" and [n.id for n in block.nodes] == ["square"]
    assert g.node("total").input_from == "map-square"
    assert g.map_fed_by("numbers") is block and g.map_fed_by("total") is None
    assert g.node("square").in_map == "map-square"


def test_inner_chain_nodes_in_one_map() -> None:
    g = shapes.inner_chain.graph
    (block,) = g.maps
    assert [n.id for n in block.nodes] == ["inc", "double"]
    assert block.nodes[1].input_from == "inc" and block.last.id == "double"
    assert [n.id for n in g.nodes] == ["numbers", "inc", "double", "total"]


def test_reused_step_gets_numbered_ids_but_one_step() -> None:
    g = shapes.reused_step.graph
    assert [n.id for n in g.nodes] == ["start", "inc", "inc-2", "inc-3"]
    assert [s.name for s in g.steps] == ["start", "inc"]
    assert g.node("inc-3").input_from == "inc-2"


def test_maps_in_sequence_and_open_map() -> None:
    g = shapes.maps_in_sequence.graph
    assert [s.id for s in g.stages] == ["numbers", "map-square", "total", "to_range", "map-double", "total-2"]
    assert isinstance(shapes.open_map.graph.result_stage, MapBlock)


def test_params_bound_at_call_site_and_by_name() -> None:
    g = shapes.params_by_name.graph
    assert dict(g.node("numbers").bindings) == {"n": ParamRef("n")}
    assert dict(g.node("scale").bindings) == {"factor": ParamRef("factor")}
    assert dict(g.node("label").bindings) == {"prefix": ParamRef("prefix"), "upper": ParamRef("upper")}
    assert g.node("label").kwargs({"n": 1, "factor": 2, "prefix": "p", "upper": True}) == {
        "prefix": "p",
        "upper": True,
    }


def test_constants_bound_at_call_site() -> None:
    @flow
    def consts():
        return src(n=2).map(one).agg(gather_all)

    assert dict(consts.graph.node("src").bindings) == {"n": Const(2)}


def test_options_recorded_on_the_graph() -> None:
    @step(retry=Retry(retries=2, interval=0.5, backoff=3, max_delay=4), memory=1024, timeout=60)
    def slow(x: int) -> int:
        return x

    @flow(name="opts", schedule="rate(1 day)")
    def f():
        return src().map(slow, concurrency=4, batch_size=10, tolerated_failure=5, tolerated_failure_count=2)

    g = f.graph
    assert g.name == "opts" and g.schedule == "rate(1 day)"
    (block,) = g.maps
    assert (block.options.concurrency, block.options.batch_size) == (4, 10)
    assert (block.options.tolerated_failure, block.options.tolerated_failure_count) == (5, 2)
    opts = g.node("slow").step.options
    assert opts.retry == Retry(retries=2, interval=0.5, backoff=3, max_delay=4)
    assert (opts.memory, opts.timeout) == (1024, 60)


def test_step_outside_a_flow_is_the_plain_function() -> None:
    assert one(1) == 2
    assert shapes.square(4) == 16


def test_graph_is_immutable() -> None:
    g = shapes.linear.graph
    with pytest.raises(AttributeError):
        g.name = "other"  # type: ignore[misc]
    node = g.nodes[0]
    assert isinstance(node, Node)
    with pytest.raises(AttributeError):
        node.id = "x"  # type: ignore[misc]


def test_retry_delays() -> None:
    policy = Retry(retries=5, interval=1, backoff=2, max_delay=5)
    assert [policy.delay(n) for n in range(1, 6)] == [1, 2, 4, 5, 5]
    assert Retry.parse(3, where="x") == Retry(retries=3)
    assert Retry.parse({"max_attempts": 2, "delay": 0.1, "backoff_rate": 1.5}, where="x") == Retry(2, 0.1, 1.5)


# ------------------------------------------------------------------------ shape errors


def test_nested_map_refused() -> None:
    """A map inside a map's body stays refused, clearly (`.map(a).map(b)` only extends the body)."""
    with raises(r"flow 'nested'.*nested maps\) is not supported.*hint: extend the chain instead"):

        @flow
        def nested():
            return src().map(one().map(two)).agg(gather_all)


def test_map_on_an_open_map_extends_the_item_chain_like_next() -> None:
    """Upstream lokki's MapBlock.map appends to the inner chain: the same graph as .next()."""

    @flow(name="same")
    def by_map():
        return src().map(one).map(two).agg(gather_all)

    @flow(name="same")
    def by_next():
        return src().map(one).next(two).agg(gather_all)

    assert by_map.graph.stages == by_next.graph.stages
    assert [n.id for n in by_map.graph.maps[0].nodes] == ["one", "two"]
    assert asl.compile_flow(by_map.graph)["States"] == asl.compile_flow(by_next.graph)["States"]


def test_map_options_on_the_second_map_are_refused() -> None:
    with raises(r"\.map\(two, \.\.\.\) on an open map extends its per-item chain.*first \.map\(\)"):

        @flow
        def late_options():
            return src().map(one).map(two, concurrency=3)


def test_agg_without_map_refused() -> None:
    with raises(r"flow 'lonely_agg'.*\.agg\(gather_all\) without an open map"):

        @flow
        def lonely_agg():
            return src().agg(gather_all)


def test_flow_returning_none_refused() -> None:
    with raises(r"flow 'forgot_return'.*returned None.*hint: add `return`"):

        @flow
        def forgot_return():
            src().map(one)


def test_flow_returning_not_a_chain_refused() -> None:
    with raises(r"flow 'not_chain'.*must return a step chain, got int"):

        @flow
        def not_chain():
            return 42


def test_flow_function_raising_is_reported() -> None:
    with raises(r"flow 'boom'.*raised ZeroDivisionError"):

        @flow
        def boom():
            return 1 / 0


def test_chain_as_map_target_refused() -> None:
    with raises(r"flow 'chain_target'.*\.map\(\) takes one step, got the chain.*hint: extend the chain"):

        @flow
        def chain_target():
            return src().map(one().next(two))


def test_call_form_binds_kwargs_in_map_and_next() -> None:
    @flow
    def call_form():
        return src().map(shapes.scale(factor=3)).next(shapes.scale, factor=2).agg(gather_all)

    g = call_form.graph
    assert dict(g.node("scale").bindings) == {"factor": Const(3)}
    assert dict(g.node("scale-2").bindings) == {"factor": Const(2)}


def test_unused_flow_param_refused() -> None:
    with raises(r"flow 'unused'.*flow parameter\(s\) extra reach no step.*hint: pass them at a call site"):

        @flow
        def unused(extra: int = 1):
            return src().map(one)


def test_unknown_step_kwarg_refused() -> None:
    with raises(r"step 'src'.*step has no parameter 'size'.*its parameters are: n"):

        @flow
        def bad_kwarg():
            return src(size=3).map(one)


def test_non_first_step_without_data_param_refused() -> None:
    with raises(r"step 'no_input'.*declares no positional parameter.*hint: def no_input\(data, \.\.\.\)"):

        @flow
        def no_data():
            return src().next(no_input)


def test_required_step_param_unbound_refused() -> None:
    with raises(r"step 'needs_k'.*required parameter 'k' gets no value.*flow parameter named 'k'"):

        @flow
        def unbound():
            return src().map(needs_k)


def test_required_step_param_bound_by_flow_param_name() -> None:
    @flow
    def bound(k: int = 5):
        return src().map(needs_k).agg(gather_all)

    assert dict(bound.graph.node("needs_k").bindings) == {"k": ParamRef("k")}


def test_binding_the_data_argument_refused() -> None:
    with raises(r"argument 'x' is where the step receives its input"):

        @flow
        def bind_data():
            return src().next(one, x=3)


def test_positional_args_bind_by_the_signature_like_keywords() -> None:
    """`src(3)` inside a flow is `src(n=3)`; `.map(scale(3))` binds after the data parameter."""

    @flow(name="same")
    def positional(n: int = 2):
        return src(n).map(shapes.scale(3)).agg(gather_all)

    @flow(name="same")
    def keywords(n: int = 2):
        return src(n=n).map(shapes.scale(factor=3)).agg(gather_all)

    assert positional.graph.stages == keywords.graph.stages
    assert asl.compile_flow(positional.graph) == asl.compile_flow(keywords.graph)


def test_positional_args_that_do_not_fit_are_refused_naming_the_parameters() -> None:
    with raises(r"step 'scale'.*positional argument\(s\) do not fit.*too many.*can set: factor.*'x' receives"):

        @flow
        def too_many():
            return src().map(shapes.scale(3, 4))


def test_first_step_data_param_unbound_refused() -> None:
    with raises(r"required parameter 'x' gets no value"):

        @flow
        def first_needs_input():
            return one().next(two)


def test_map_over_non_step_refused() -> None:
    with raises(r"\.map\(\) takes a step.*hint: decorate the function with @step"):

        @flow
        def not_a_step():
            return src().map(len)  # type: ignore[arg-type]


def test_flow_called_directly_refused() -> None:
    with raises(r"flow 'linear' is not called directly"):
        shapes.linear()


def test_flow_param_used_as_bool_at_definition_refused() -> None:
    with raises(r"flow 'branchy'.*flow parameter 'n' is used in a condition.*where it has no value yet"):

        @flow
        def branchy(n: int = 3):
            if n:
                return src(n=n).map(one)
            return src(n=n)


def test_flow_star_args_refused() -> None:
    with raises(r"flow parameter 'args' must be a plain named parameter", ParamError):

        @flow
        def star(*args: int):
            return src()


# ----------------------------------------------------------------------- option errors


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"retries": -1}, r"retries must be an integer >= 0, got -1"),
        ({"retries": True}, r"retries must be an integer >= 0"),
        ({"interval": -1}, r"interval must be a number >= 0"),
        ({"backoff": 0.5}, r"backoff must be a number >= 1, got 0.5"),
        ({"max_delay": 0}, r"max_delay must be a number > 0"),
        ({"exceptions": (int,)}, r"exceptions must be exception classes.*hint: e\.g\. Retry"),
        ({"exceptions": ()}, r"exceptions must be exception classes"),
    ],
)
def test_bad_retry_options(kwargs: dict[str, Any], message: str) -> None:
    with raises(r"Retry: " + message):
        Retry(**kwargs)


def test_retry_single_exception_class_accepted() -> None:
    assert Retry(exceptions=ValueError).exceptions == (ValueError,)  # type: ignore[arg-type]


def test_bad_retry_dict_and_type() -> None:
    with raises(r"step 'r'.*unknown retry option\(s\) tries"):

        @step(retry={"tries": 3})
        def r(x: int) -> int:
            return x

    with raises(r"retry must be a Retry, an int or a dict, got str"):

        @step(retry="3")  # type: ignore[call-overload]
        def r2(x: int) -> int:
            return x


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency": 0}, r"concurrency must be an integer >= 1, got 0"),
        ({"batch_size": 0}, r"batch_size must be an integer >= 1, got 0"),
        ({"batch_size": 2.5}, r"batch_size must be an integer >= 1"),
        ({"tolerated_failure": 101}, r"tolerated_failure is a percentage between 0 and 100, got 101"),
        ({"tolerated_failure_count": -1}, r"tolerated_failure_count must be an integer >= 0"),
        ({"mode": "parallel"}, r"mode must be one of distributed, inline"),
        ({"execution_type": "FAST"}, r"execution_type must be one of STANDARD, EXPRESS"),
        ({"mode": "inline", "batch_size": 5}, r"batch_size needs mode='distributed'"),
        ({"executor": "gpu"}, r"executor must be one of auto, threads, processes, got 'gpu'"),
    ],
)
def test_bad_map_options(options: dict[str, Any], message: str) -> None:
    with raises(r"flow 'bad_map', \.map\(one\): " + message):

        @flow
        def bad_map():
            return src().map(one, **options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"memory": 64}, r"memory must be an integer from 128 to 10240, got 64"),
        ({"timeout": 901}, r"timeout must be an integer from 1 to 900"),
        ({"architecture": "sparc"}, r"architecture must be one of x86_64, arm64"),
        ({"environment": {"1BAD": "x"}}, r"environment variable name '1BAD' is not valid"),
        ({"environment": {"AWS_REGION": "x"}}, r"environment variable AWS_REGION is reserved"),
        ({"environment": {"N": 1}}, r"environment variable N must be a string, got int"),
        ({"permissions": [{"Action": "s3:GetObject"}]}, r"each permission must be an IAM statement"),
        ({"permissions": [{"Action": "a", "Resource": "*", "Bogus": 1}]}, r"unknown IAM statement key"),
    ],
)
def test_bad_step_options(options: dict[str, Any], message: str) -> None:
    with raises(r"step 'opt': " + message):

        @step(**options)
        def opt(x: int) -> int:
            return x


def test_bad_names() -> None:
    with raises(r"flow name '9lives' must start with an ASCII letter"):
        flow(name="9lives")
    with raises(r"flow name 'has-dash' must start with an ASCII letter"):
        flow(name="has-dash")
    with raises(r"flow 'daily': schedule 'every day' is not an EventBridge expression.*rate\(1 day\)"):

        @flow(schedule="every day")
        def daily():
            return src()

    with raises(r"step '_private'.*step names must start with an ASCII letter"):

        @step
        def _private() -> int:
            return 1

    with raises(r"step 'größe'.*only a-z, A-Z, 0-9 and _"):  # a Python identifier, not a CloudFormation name

        @step
        def größe() -> int:
            return 1


def test_async_and_generator_steps_refused() -> None:
    with raises(r"step 'agen'.*plain functions \(not async, not generators\)"):

        @step
        async def agen() -> int:
            return 1

    with raises(r"step 'gen'.*hint: return a list instead of yielding"):

        @step
        def gen():  # type: ignore[no-untyped-def]
            yield 1


def test_tolerates_follows_step_functions_thresholds() -> None:
    from lokki_sam.graph import MapOptions

    assert MapOptions().tolerates(0, 10)
    assert not MapOptions().tolerates(1, 10)
    assert MapOptions(tolerated_failure=10).tolerates(1, 10)
    assert not MapOptions(tolerated_failure=10).tolerates(2, 10)
    assert MapOptions(tolerated_failure_count=2).tolerates(2, 10)
    assert not MapOptions(tolerated_failure_count=2).tolerates(3, 10)
    # Both set: exceeding either fails the map.
    assert not MapOptions(tolerated_failure=50, tolerated_failure_count=1).tolerates(2, 10)
    assert not MapOptions(tolerated_failure=10, tolerated_failure_count=5).tolerates(2, 10)
