"""The flow runs in-process with lokki_sam.testing: every step's output is there to check."""

from lokki_sam.testing import run_flow_in_process

from {{ cookiecutter.project_slug }} import flow


def test_steps_are_plain_functions() -> None:
    assert flow.count(["a", "b", "a"]) == {"a": 2, "b": 1}
    assert flow.top_words({"b": 2, "a": 2, "c": 3}, top=2) == [("c", 3), ("a", 2)]


def test_flow_runs_end_to_end() -> None:
    run = run_flow_in_process(flow.{{ cookiecutter.flow_name }}, top=3)
    assert run.output("list_documents") == ["bread.txt", "lighthouse.txt", "rivers.txt"]
    assert [len(words) for words in run.output("tokenize")] == [22, 18, 20]  # one entry per document
    assert run.result == [("water", 6), ("bread", 4), ("every", 3)]


def test_parameters_reach_the_steps_by_name() -> None:
    run = run_flow_in_process(flow.{{ cookiecutter.flow_name }}, min_length="6", top="1")
    assert run.result == [("starts", 2)]
