"""A Batch step's job size: the step's own settings completed by lokki.toml's `[batch]`, checked
against what AWS Batch accepts (Fargate's vCPU/memory table, EC2's whole vCPUs)."""

from __future__ import annotations

import pytest

from lokki_sam.batch import sizing
from lokki_sam.config import SCHEMA
from lokki_sam.errors import FlowDefinitionError

DEFAULTS = {name: key.default for name, key in SCHEMA.items()}


def test_every_fargate_pair_is_accepted_and_neighbours_are_not() -> None:
    for cpu, memories in sizing.FARGATE.items():
        for memory in memories:
            assert sizing.pair_problem(cpu, memory) is None
        assert sizing.pair_problem(cpu, memories[-1] + 1024) is not None
        assert sizing.pair_problem(cpu, memories[0] - 512) is not None
    assert len(sizing.FARGATE[16]) == 12 and sizing.FARGATE[8][-1] == 61440  # AWS's table: 32-120 GiB, 16-60 GiB


def test_a_step_without_a_size_takes_the_batch_defaults() -> None:
    size = sizing.job_size(None, None, None, None, None, DEFAULTS, "step 'fit'")
    assert size == sizing.JobSize("fargate", 1, 2048, 0, 3600)


def test_a_gpu_step_runs_on_ec2_with_any_memory() -> None:
    size = sizing.job_size(4, 1000, 1, None, None, {**DEFAULTS, "batch_timeout": 600}, "step 'fit'")
    assert size == sizing.JobSize("ec2", 4, 1000, 1, 600)


def test_a_default_that_does_not_pair_with_the_steps_own_setting_names_both() -> None:
    with pytest.raises(FlowDefinitionError) as e:
        sizing.job_size(4, None, None, None, None, DEFAULTS, "flow 'f', step 'fit'")
    text = str(e.value)
    assert text.startswith("flow 'f', step 'fit': Fargate offers 4 vCPU with 8192-30720")
    assert "the step gives cpu=4, lokki.toml's [batch] memory the rest" in text
