"""What an AWS Batch job costs in time on lokki-sam's local cloud (LocalStack + its Batch plugin).

Starts LocalStack as `lokki-sam emulator start` does, creates a compute environment, a queue and a
job definition through the Batch API, and measures, per job:

- the job's own process: a host `python -c pass` (the floor any job pays here);
- SubmitJob until DescribeJobs says SUCCEEDED (polled every 20 ms), in sequence;
- a Step Functions execution of one `batch:submitJob.sync` Task, start to SUCCEEDED;
- a STANDARD Distributed Map of N such Tasks (per job, and in all);
- a lokki-sam step through `python -m lokki_sam.batch` (its own process, as a job's command would).

With `--deployed`, the same flow generated twice, deployed and invoked on that local cloud: every
step a Batch job (`tests/flows/batch_mixed.py:batch_only`), and every step on Lambda (its
`COMPUTE` set to "lambda"): `lokki-sam generate`, `sam build`, `sam deploy`, then `lokki-sam
invoke` of each, alternately; the difference per job is what a Batch step costs here over a
Lambda step, its own process and the `.sync` polling included.

Figures are this machine's wall time, not AWS latencies (a Fargate job waits tens of seconds for
its task to start).

    python bench/batch_overhead.py [--jobs 10] [--map 8]
    python bench/batch_overhead.py --deployed [--items 8] [--runs 5]
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
    parser.add_argument("--deployed", action="store_true", help="a generated flow on Batch vs on Lambda")
    parser.add_argument("--items", type=int, default=8)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if args.deployed:
        deployed(args.items, args.runs)
        return
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


FLOW = "src/batch_mixed.py:batch_only"
BIN = Path(sys.executable).parent


def deployed(items: int, runs: int) -> None:
    """batch_only on Batch and on Lambda: generated, built, deployed to one local cloud, invoked alternately."""
    import os
    import shutil
    import tempfile

    source = (ROOT / "tests" / "flows" / "batch_mixed.py").read_text()
    switch = 'COMPUTE = "lambda" if os.environ.get("LOKKI_TEST_LAMBDA_ONLY") else "batch"'
    assert switch in source
    with tempfile.TemporaryDirectory(prefix="lokki-batch-bench-") as tmp:
        projects = {}
        for kind in ("batch", "lambda"):
            root = Path(tmp) / kind
            (root / "src").mkdir(parents=True)
            text = source if kind == "batch" else source.replace(switch, 'COMPUTE = "lambda"')
            (root / "src" / "batch_mixed.py").write_text(text)
            (root / "src" / "requirements.txt").write_text("# none\n")
            (root / "lokki.toml").write_text(
                'architecture = "x86_64"\n[batch]\nsubnets = ["subnet-0123456789abcdef0"]\n'
                'security_groups = ["sg-0123456789abcdef0"]\n'
            )
            (root / "samconfig.toml").write_text(
                f'version = 0.1\n[default.deploy.parameters]\nstack_name = "bench-{kind}"\nresolve_s3 = true\n'
                'capabilities = "CAPABILITY_IAM"\nconfirm_changeset = false\nfail_on_empty_changeset = false\n'
            )
            projects[kind] = root
        env = {
            "PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(Path(tmp) / "home"),
            "SAM_CLI_TELEMETRY": "0",
            "SAM_CLI_POLL_DELAY": "0.5",
            "PIP_NO_INDEX": "1",
        }
        for root in projects.values():
            for cmd in (["lokki-sam", "generate", FLOW], ["sam", "build"]):
                subprocess.run([str(BIN / cmd[0]), *cmd[1:]], cwd=root, env=env, check=True, capture_output=True)
        # The local cloud takes the Batch images from the project it serves (its start folder).
        os.environ["LOKKI_EMULATOR_PROJECT"] = str(projects["batch"])
        started = control.start("localstack", process.free_port(), None, progress=lambda t: print(t, file=sys.stderr))
        env |= control.client_environment(started.record.endpoint)
        try:
            for root in projects.values():
                subprocess.run([str(BIN / "sam"), "deploy"], cwd=root, env=env, check=True, capture_output=True)
            times: dict[str, list[float]] = {kind: [] for kind in projects}
            for _ in range(runs):
                for kind, root in projects.items():
                    began = time.perf_counter()
                    done = subprocess.run(
                        [str(BIN / "lokki-sam"), "invoke", FLOW, "-p", f"n={items}"],
                        cwd=root, env=env, capture_output=True, text=True,
                    )  # fmt: skip
                    assert done.returncode == 0, done.stderr
                    times[kind].append(time.perf_counter() - began)
        finally:
            control.stop("localstack")
            shutil.rmtree(Path(tmp) / "home", ignore_errors=True)
    jobs = 2 * items + 2  # numbers, cube and shift per item, total: jobs on Batch, invocations on Lambda
    batch, lam = statistics.median(times["batch"]), statistics.median(times["lambda"])
    print(f"batch_only, n={items}: {jobs} Tasks per run, {runs} runs each, `lokki-sam invoke` wall time")
    print(line("every step a Batch job, per run", times["batch"]))
    print(line("every step on Lambda, per run", times["lambda"]))
    print(f"{'a Batch job over a Lambda invocation, per Task':<58} {1000 * (batch - lam) / jobs:8.0f} ms")


if __name__ == "__main__":
    main()
