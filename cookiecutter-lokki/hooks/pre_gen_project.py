"""Check the answers before any project file is written; stop with every problem at once.

Cookiecutter runs this script in the (still empty) project directory, and removes that
directory again when the script exits non-zero. Standard library only: it
runs under whatever Python runs cookiecutter or `sam init`.
"""

from __future__ import annotations  # the hook may run under an older Python than lokki-sam needs

import builtins
import json
import keyword
import re
import sys

# Cookiecutter renders the answers into this raw string as JSON.
ANSWERS = json.loads(r"""{{ cookiecutter|jsonify }}""")

# Lambda Python runtimes lokki-sam supports (it needs Python >= 3.11).
RUNTIMES = ("python3.11", "python3.12", "python3.13")
ARCHITECTURES = ("arm64", "x86_64")
FRAMEWORKS = ("sam", "serverless")
# Top-level names of each starter's flow.py: a flow named like one of them would replace it.
STARTER_NAMES = {
    "birds": ("get_birds", "flap", "join"),
    "wordcount": ("HERE", "WORD_RE", "list_documents", "tokenize", "count", "merge", "top_words"),
    "minimal": ("greet", "shout"),
}
IMPORTED = ("annotations", "flow", "main", "step", "re", "Counter", "Path")
# Patterns are full-matched: `$` alone would also accept an answer ending in a newline.
PROJECT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}")
IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
# us-east-1, eu-central-2, ap-southeast-4, us-gov-west-1, cn-north-1, ...
REGION = re.compile(r"[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[1-9]")
STACK = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,127}")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # newlines, form feeds, tabs...: pip would split on them
SHADOWED = set(getattr(sys, "stdlib_module_names", ())) | {"lokki_sam", "boto3", "botocore", "tests", "test"}


def check_identifier(what: str, value: str) -> list[str]:
    if not IDENTIFIER.fullmatch(value):
        return [f"{what} {value!r} is not a Python identifier (start with a letter; letters, digits and _ only)"]
    if keyword.iskeyword(value) or keyword.issoftkeyword(value):
        return [f"{what} {value!r} is a Python keyword"]
    return []


def problems(a: dict) -> list[str]:
    found = []
    if not PROJECT_NAME.fullmatch(a["project_name"]):
        found.append(
            f"project_name {a['project_name']!r} must be a folder name: letters, digits, spaces, '-', '_' or '.', "
            "starting with a letter or digit"
        )
    slug = a["project_slug"]
    found += check_identifier("project_slug", slug)
    if slug in SHADOWED:
        found.append(f"project_slug {slug!r} would shadow the module {slug!r} that the flow or Lambda imports")
    if a["starter"] not in STARTER_NAMES:
        found.append(f"starter {a['starter']!r} is not one of {', '.join(STARTER_NAMES)}")
    name = a["flow_name"]
    found += check_identifier("flow_name", name)
    taken = STARTER_NAMES.get(a["starter"], ()) + IMPORTED
    if name in taken or hasattr(builtins, name):
        found.append(f"flow_name {name!r} clashes with a name the flow module uses")
    if a.get("framework", "sam") not in FRAMEWORKS:
        found.append(f"framework {a['framework']!r} is not one of {', '.join(FRAMEWORKS)}")
    if a["runtime"] not in RUNTIMES:
        found.append(f"runtime {a['runtime']!r} is not supported; use one of {', '.join(RUNTIMES)}")
    if a["architecture"] not in ARCHITECTURES:
        found.append(f"architecture {a['architecture']!r} is not one of {', '.join(ARCHITECTURES)}")
    if not REGION.fullmatch(a["aws_region"]):
        found.append(f"aws_region {a['aws_region']!r} is not an AWS region name like us-east-1 or eu-west-2")
    if not STACK.fullmatch(a["stack_name"]):
        found.append(
            f"stack_name {a['stack_name']!r} is not a CloudFormation stack name "
            "(start with a letter; letters, digits and -; at most 128 characters)"
        )
    requirement = a["lokki_sam_requirement"]
    if requirement != "auto" and (CONTROL.search(requirement) or not re.search(r"lokki[-_.]sam", requirement, re.I)):
        found.append(
            f"lokki_sam_requirement {requirement!r} must be auto or one pip requirement line naming lokki-sam, "
            "e.g. 'lokki-sam>=0.1' or 'lokki-sam @ git+https://...'"
        )
    return found


def main() -> int:
    found = problems(ANSWERS)
    if not found:
        return 0
    print("error: cannot create the project:", file=sys.stderr)
    for problem in found:
        print(f"  - {problem}", file=sys.stderr)
    print("  hint: run again with corrected answers (e.g. cookiecutter ... project_slug=my_flows)", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
