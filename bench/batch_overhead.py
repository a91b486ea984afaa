"""What an AWS Batch job costs in time on lokki-sam's local cloud (LocalStack + its Batch plugin).

Starts LocalStack as `lokki-sam emulator start` does, creates a compute environment, a queue and a
job definition through the Batch API, and measures, per job:

- the job's own process: a host `python -c pass` (the floor any job pays here);
- SubmitJob until DescribeJobs says SUCCEEDED (polled every 20 ms), in sequence;
- a Step Functions execution of one `batch:submitJob.sync` Task, start to SUCCEEDED;
- a STANDARD Distributed Map of N such Tasks (per job, and in all);
- a lokki-sam step through `python -m lokki_sam.batch` (its own process, as a job's command would).

Figures are this machine's wall time, not AWS latencies (a Fargate job waits tens of seconds for
its task to start).

    python bench/batch_overhead.py [--jobs 10] [--map 8]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lokki_sam.emulator import control, process  # noqa: E402
from tests.support.local_batch import client, create_queue, finished, register  # noqa: E402

SUBMIT = "arn:aws:states:::batch:submitJob.sync"


def timed(fn: Any) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def wait_execution(sfn: Any, arn: str) -> str:
    while True:
        status = sfn.describe_execution(executionArn=arn)["status"]
        if status != "RUNNING":
            return str(status)
        time.sleep(0.05)


def line(what: str, values: list[float], per: int = 1) -> str:
    each = [v / per * 1000 for v in values]
    return f"{what:<58} median {statistics.median(each):8.0f} ms   min {min(each):8.0f} ms   (n={len(values)})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--map", type=int, default=8)
    args = parser.parse_args()
    started = control.start("localstack", process.free_port(), None, progress=lambda text: print(text, file=sys.stderr))
    endpoint = started.record.endpoint
    try:
        batch, sfn = client(endpoint, "batch"), client(endpoint, "stepfunctions")
        create_queue(batch, "bench", max_vcpus=64)
        register(batch, "bench", "bench", [sys.executable, "-c", "pass"])
        task = {
            "Type": "Task",
            "Resource": SUBMIT,
            "Parameters": {"JobName": "bench-job", "JobQueue": "bench", "JobDefinition": "bench"},
            "End": True,
        }
        one = sfn.create_state_machine(
            name="one",
            roleArn="arn:aws:iam::000000000000:role/sfn",
            definition=json.dumps({"StartAt": "t", "States": {"t": task}}),
        )["stateMachineArn"]
        fan = {
            "StartAt": "m",
            "States": {
                "m": {
                    "Type": "Map",
                    "ItemsPath": "$.items",
                    "ItemProcessor": {
                        "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                        "StartAt": "t",
                        "States": {"t": task},
                    },
                    "End": True,
                }
            },
        }
        many = sfn.create_state_machine(
            name="many", roleArn="arn:aws:iam::000000000000:role/sfn", definition=json.dumps(fan)
        )["stateMachineArn"]

        process_only = [
            timed(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True)) for _ in range(args.jobs)
        ]
        entry = [
            timed(lambda: subprocess.run([sys.executable, "-c", "import lokki_sam.batch.entry"], check=True))
            for _ in range(args.jobs)
        ]
        direct = []
        for _ in range(args.jobs):
            began = time.perf_counter()
            job = batch.submit_job(jobName="bench-job", jobQueue="bench", jobDefinition="bench")["jobId"]
            assert finished(batch, job, poll=0.02)["status"] == "SUCCEEDED"
            direct.append(time.perf_counter() - began)
        through_sfn = []
        for _ in range(args.jobs):
            began = time.perf_counter()
            arn = sfn.start_execution(stateMachineArn=one, input="{}")["executionArn"]
            assert wait_execution(sfn, arn) == "SUCCEEDED"
            through_sfn.append(time.perf_counter() - began)
        began = time.perf_counter()
        arn = sfn.start_execution(stateMachineArn=many, input=json.dumps({"items": list(range(args.map))}))[
            "executionArn"
        ]
        assert wait_execution(sfn, arn) == "SUCCEEDED"
        mapped = time.perf_counter() - began

        print(
            f"AWS Batch on lokki-sam's local cloud (LocalStack 4.14 + plugin), host jobs, {time.strftime('%Y-%m-%d')}"
        )
        print(line("a host process: python -c pass", process_only))
        print(line("a host process importing lokki_sam.batch.entry", entry))
        print(line("SubmitJob -> SUCCEEDED (python -c pass)", direct))
        print(line("execution of one batch:submitJob.sync Task", through_sfn))
        print(line(f"Distributed Map of {args.map} .sync jobs, per job", [mapped], per=args.map))
        print(f"{f'Distributed Map of {args.map} .sync jobs, in all':<58} {mapped:14.2f} s")
    finally:
        control.stop("localstack")


if __name__ == "__main__":
    main()
