# Upstream lokki's tests/flows/lambda_batch_pipeline/flow.py
# (github.com/alamminsalo/lokki at 7700eb8; MIT licence, (c) 2026 Lokki Contributors).
# Ported for docs/migrating.md: only the import lines changed.
"""Test flow with both Lambda and Batch steps for state machine testing."""

from lokki_sam import flow, step


@step
def fetch_data() -> dict:
    return {"values": [1, 2, 3, 4, 5]}


@step(job_type="batch", vcpu=2, memory_mb=1024)
def process_batch(data: dict) -> dict:
    return {"processed": sum(data.get("values", []))}


@step
def format_output(result: dict) -> str:
    return f"Final result: {result.get('processed', 0)}"


@flow
def lambda_batch_pipeline():
    """Test flow with both Lambda and Batch steps for state machine testing."""
    return fetch_data().next(process_batch).next(format_output)


if __name__ == "__main__":
    from lokki_sam import main

    main(lambda_batch_pipeline)
