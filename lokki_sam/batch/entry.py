"""The Batch job's entry point: `python -m lokki_sam.batch`.

The job's environment is a function's (`names.ENV_*`, from the job definition) plus what the
Task state passed (`job.py`); from it the entry point builds the very event the Lambda handler
would receive and calls `lokki_sam.runtime.handle`, so a step computes, stores and logs the same
whether Lambda or Batch runs it (the run log records go to the job's log stream, on stdout).

The step's own Retry runs here, between attempts of one job: Step Functions reports every
failed job as `States.TaskFailed`, so it cannot tell an exception the step retries from one it
does not, or from lokki-sam's own refusals; and a new job per attempt would wait for a new
container each time.

Exit codes: 0 the step succeeded; 1 it failed (the user's traceback on stderr), or the store was
unreachable after its retries; 2 lokki-sam refused the job (a wrong environment, another flow
version, a foreign artifact: retrying cannot help). A step feeding a map leaves what the Lambda
handler would return (the manifest's location) under `names.batch_result_key`, for the state
machine to read.

Standard library and boto3 only: this is the runtime path.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Mapping
from typing import Any

from lokki_sam import names, runlog, runtime
from lokki_sam.batch import job
from lokki_sam.errors import EXIT_OK, EXIT_STEP_FAILED, LokkiError
from lokki_sam.protocol import MAP, NODE, RUN_ID
from lokki_sam.retry import call_with_retry
from lokki_sam.store import ArtifactStore, LocalStore, S3Store, s3_client
from lokki_sam.tracebacks import user_frame_summaries


def main(environ: Mapping[str, str] | None = None) -> int:
    """Run the job the environment describes; return the process's exit code."""
    env = os.environ if environ is None else environ
    runlog.configure(env)
    try:
        run(env)
    except LokkiError as exc:
        print(f"error: {exc.render()}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:
        print(user_traceback(exc), file=sys.stderr)
        return EXIT_STEP_FAILED
    return EXIT_OK


def run(env: Mapping[str, str]) -> dict[str, Any]:
    """The job's event through `runtime.handle`, with the node's Retry between attempts."""
    event = job.event_from_environment(env)
    settings = runtime.FunctionEnv.from_env(env)
    graph = runtime.load_graph(settings.module, settings.flow)
    node = runtime.resolve_node(graph, event[NODE], settings.step)
    store = _store(env, settings)

    def report(attempt: int, exc: BaseException, wait: float) -> None:
        runlog.LOGGER.warning(
            "step retried",
            extra={"attempt": attempt, "error": f"{type(exc).__name__}: {exc}", "wait_seconds": round(wait, 3)},
        )

    result = call_with_retry(lambda: runtime.handle(event, env, store=store), node.step.options.retry, on_retry=report)
    if event.get(MAP) is None and graph.map_fed_by(node.id) is not None and isinstance(store, S3Store):
        # The Lambda handler returns this to the state machine; a job leaves it where the next state reads it.
        key = names.batch_result_key(str(event[RUN_ID]), node.id)
        store.client.put_object(
            Bucket=store.bucket,
            Key=store.full_key(key),
            Body=json.dumps(result).encode(),
            ContentType="application/json",
        )
    return result


def _store(env: Mapping[str, str], settings: runtime.FunctionEnv) -> ArtifactStore:
    local = env.get(job.ENV_LOCAL_STORE, "").strip()
    if local:
        return LocalStore(local)
    # As the Lambda runtime: only a non-empty LOKKI_ENDPOINT_URL is passed on to boto3.
    endpoint = env.get(names.ENV_ENDPOINT_URL, "").strip()
    client = s3_client(endpoint_url=endpoint) if endpoint else s3_client()
    store = S3Store(settings.bucket, settings.prefix, client)
    runlog.METER.attach(client)
    return store


def user_traceback(exc: BaseException) -> str:
    """The exception with the user's frames only (lokki-sam's own dropped), as Python prints it."""
    frames = user_frame_summaries(exc)
    lines = ["Traceback (most recent call last):\n", *traceback.format_list(frames)] if frames else []
    return "".join([*lines, *traceback.format_exception_only(exc)]).rstrip()
