"""The flow runs in-process with lokki_sam.testing: every step's output is there to check."""

from lokki_sam.testing import run_flow_in_process

from {{ cookiecutter.project_slug }} import flow


def test_steps_are_plain_functions() -> None:
    assert flow.get_birds(limit=1) == ["goose"]
    assert flow.flap("duck") == "flappy duck"


def test_flow_runs_end_to_end() -> None:
    run = run_flow_in_process(flow.{{ cookiecutter.flow_name }}, limit=2)
    assert run.result == "flappy goose, flappy duck"
    assert run.output("get_birds") == ["goose", "duck"]
    assert run.output("flap") == ["flappy goose", "flappy duck"]  # one output per map item


def test_parameters_are_coerced_like_the_command_line() -> None:
    assert run_flow_in_process(flow.{{ cookiecutter.flow_name }}, limit="1").result == "flappy goose"
