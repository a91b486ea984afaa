"""`sam deploy` the way users first run it, against ministack on 127.0.0.1: `--guided`, its prompts
answered through a pseudo-terminal (pexpect) with the answers docs/deploy.md recommends; and what
`--resolve-image-repos` does for image steps, up to the push.

The prompts and answers come from the table after `<!-- sam-deploy-guided -->`; a prompt SAM asks that
the table does not list fails the test (the docs must cover every question). The samconfig.toml SAM
saves must equal the block after `<!-- sam-deploy-guided-saved -->`, and `lokki-sam invoke`, reading
the stack from that file, must print `lokki-sam run`'s result.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from tests.conftest import LOKKI_SAM, REPO, lokki_env
from tests.support.ministack import Ministack

pexpect = pytest.importorskip("pexpect")
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="pexpect.spawn needs a POSIX pseudo-terminal")

DOC = REPO / "docs" / "deploy.md"
SAM = str(Path(sys.executable).with_name("sam"))
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def documented_answers() -> list[tuple[str, str]]:
    """(prompt, answer) rows of the table after `<!-- sam-deploy-guided -->`; *Enter* is an empty answer."""
    text = DOC.read_text()
    table = text.split("<!-- sam-deploy-guided -->", 1)[1].split("\n\n", 1)[0]
    rows = []
    for line in table.strip().splitlines()[2:]:  # after the header and its rule
        prompt, answer = (cell.strip() for cell in line.strip("|").split("|")[:2])
        rows.append((prompt.strip("`"), "" if answer == "*Enter*" else answer.strip("`")))
    assert rows, f"no answers after <!-- sam-deploy-guided --> in {DOC}"
    return rows


def documented_samconfig() -> dict[str, object]:
    text = DOC.read_text()
    block = re.search(r"<!-- sam-deploy-guided-saved -->\s*```toml\n(.*?)```", text, re.DOTALL)
    assert block, f"no saved samconfig.toml after <!-- sam-deploy-guided-saved --> in {DOC}"
    return tomllib.loads(block.group(1))


def test_guided_deploy_saves_the_documented_answers(tmp_path: Path) -> None:
    app = tmp_path / "app"
    (app / "examples").mkdir(parents=True)
    shutil.copy(REPO / "examples" / "birds.py", app / "examples" / "birds.py")
    (tmp_path / "home").mkdir()
    with Ministack.start(python="3.11", workdir=tmp_path / "ministack") as cloud:
        env = lokki_env(tmp_path / "home", **cloud.client_env(), SAM_CLI_POLL_DELAY="0.5", TERM="dumb")
        for args in ([LOKKI_SAM, "generate", "examples/birds.py", "--code-uri", "examples"], [SAM, "build"]):
            done = subprocess.run(
                args, cwd=app, env={**env, "LOKKI_RUNTIME": "python3.11"}, capture_output=True, text=True, timeout=300
            )
            assert done.returncode == 0, done.stdout + done.stderr
        answers = documented_answers()
        began = time.perf_counter()
        transcript = drive_guided(app, env, answers)
        seconds = time.perf_counter() - began
        saved = tomllib.loads((app / "samconfig.toml").read_text())
        assert saved == documented_samconfig(), (app / "samconfig.toml").read_text()
        assert "Successfully created/updated stack - birds-dev in us-east-1" in transcript
        # The saved file is what lokki-sam reads too: invoke finds the stack through it.
        invoked = subprocess.run(
            [LOKKI_SAM, "invoke", "examples/birds.py", "-p", "limit=2"],
            cwd=app,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert invoked.returncode == 0, invoked.stderr + cloud.log()[-3000:]
        assert invoked.stdout.strip() == "flappy goose, flappy duck"
        print(f"\n  sam deploy --guided on ministack ({len(answers)} prompts, deploy included): {seconds:.1f} s")


def drive_guided(app: Path, env: dict[str, str], answers: list[tuple[str, str]]) -> str:
    """Run `sam deploy --guided` on a pseudo-terminal, answering each prompt as the docs say, in order.
    Returns the transcript (ANSI colours removed)."""
    child = pexpect.spawn(SAM, ["deploy", "--guided"], cwd=str(app), env=env, encoding="utf-8", timeout=120)
    child.setwinsize(50, 200)
    log: list[str] = []
    child.logfile_read = _Collect(log)
    asked: list[str] = []
    try:
        while True:
            # A prompt ends in "[default]: " (click); the deploy ends with EOF.
            index = child.expect([r"\[[^\]\n]*\]: $", pexpect.EOF], timeout=180)
            if index == 1:
                break
            line = ANSI.sub("", (child.before or "") + (child.after or "")).splitlines()[-1].strip()
            question = line.removesuffix(":").strip()
            expected = answers[len(asked)] if len(asked) < len(answers) else None
            assert expected is not None, f"SAM asked {question!r}, which docs/deploy.md does not answer"
            assert question == expected[0], f"SAM asked {question!r}; docs/deploy.md expects {expected[0]!r} here"
            asked.append(question)
            child.sendline(expected[1])
    finally:
        child.close()
    transcript = ANSI.sub("", "".join(log))
    assert child.exitstatus == 0, transcript[-4000:]
    assert asked == [prompt for prompt, _ in answers], "SAM did not ask every documented question"
    return transcript


class _Collect:
    def __init__(self, sink: list[str]) -> None:
        self.sink = sink

    def write(self, text: str) -> None:
        self.sink.append(text)

    def flush(self) -> None:
        pass


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # samtranslator's validator, run in-process here
def test_resolve_image_repos_gives_each_image_function_a_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`sam deploy --resolve-image-repos` up to the push: SAM's own sync_ecr_stack (what the flag runs)
    on a generated template with zip and image steps creates the companion stack on ministack with one
    ECR repository per image function and none for the zip ones. The push itself would go to
    `<account>.dkr.ecr.<region>.amazonaws.com` (SAM accepts only ECR URIs): not tried here."""
    import boto3
    from samcli.lib.bootstrap.companion_stack.companion_stack_manager import sync_ecr_stack

    from tests.support.sam import PACKAGING_FILE

    app = tmp_path / "app"
    (app / "src").mkdir(parents=True)
    shutil.copy(PACKAGING_FILE, app / "src" / "packaging.py")
    env = lokki_env(tmp_path, LOKKI_RUNTIME="python3.11")
    done = subprocess.run([LOKKI_SAM, "generate", "src/packaging.py"], cwd=app, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with Ministack.start(python="3.11", workdir=tmp_path / "ministack") as cloud:
        for name, value in cloud.client_env().items():
            monkeypatch.setenv(name, value)
        boto3.client("s3").create_bucket(Bucket="deploy-artifacts")
        template = str(app / "template.yaml")
        repositories = sync_ecr_stack(template, "packed-dev", "us-east-1", "deploy-artifacts", "packed-dev", {})
        images = {"MixedSquareFunction", "MixedDescribeFunction", "BoxedSquareFunction", "BoxedTotalFunction"}
        assert set(repositories) == images  # MixedSizesFunction, MixedShoutFunction, BoxedCountUpFunction: zips
        summaries = boto3.client("cloudformation").list_stacks()["StackSummaries"]
        stacks = {s["StackName"]: s["StackStatus"] for s in summaries}
        assert [status for name, status in stacks.items() if name.endswith("-CompanionStack")] == ["CREATE_COMPLETE"]
        names = {r["repositoryUri"] for r in boto3.client("ecr").describe_repositories()["repositories"]}
        assert names == set(repositories.values())
