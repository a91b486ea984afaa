"""The flow runs in-process with lokki_sam.testing: every step's output is there to check."""

from lokki_sam.testing import run_flow_in_process

from {{ cookiecutter.project_slug }} import flow


def test_steps_are_plain_functions() -> None:
    assert flow.greet(name="Ada") == "hello Ada"
    assert flow.shout("hi") == "HI!"


def test_flow_runs_end_to_end() -> None:
    run = run_flow_in_process(flow.{{ cookiecutter.flow_name }}, name="Ada")
    assert run.output("greet") == "hello Ada"
    assert run.result == "HELLO ADA!"


def test_defaults_apply() -> None:
    assert run_flow_in_process(flow.{{ cookiecutter.flow_name }}).result == "HELLO WORLD!"
