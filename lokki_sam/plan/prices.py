"""List prices and service limits the plan is checked against: constants, each with its source.

Prices are AWS's public on-demand list prices for us-east-1 as of 2026 (free tiers ignored); they
change, and other regions differ. Nothing here is fetched: `lokki-sam plan` needs no AWS access.
"""

from __future__ import annotations

# ---------------------------------------------------------------------------------- prices
# Step Functions, https://aws.amazon.com/step-functions/pricing/ (read 2026): Standard workflows
# "$0.025 per 1,000 state transitions"; Express workflows "$1.00 per million requests" and, for
# the first duration tier, "$0.00001667 per GB-second", duration "rounded up to the nearest 100ms"
# and memory "billed in 64-MB chunks".
STANDARD_TRANSITION_USD = 0.025 / 1000
EXPRESS_REQUEST_USD = 1.00 / 1_000_000
EXPRESS_GB_SECOND_USD = 0.00001667
EXPRESS_BILLING_MS = 100
EXPRESS_MEMORY_MB = 64  # a child's definition and payloads are small: one 64 MB chunk (an estimate)

# Lambda, https://aws.amazon.com/lambda/pricing/ (read 2026): "$0.20 per 1M requests"; duration
# per GB-second (first tier) $0.0000166667 on x86_64 and $0.0000133334 on arm64, billed per 1 ms.
LAMBDA_REQUEST_USD = 0.20 / 1_000_000
LAMBDA_GB_SECOND_USD = {"x86_64": 0.0000166667, "arm64": 0.0000133334}

# S3 Standard, https://aws.amazon.com/s3/pricing/ (read 2026): "PUT, COPY, POST, LIST requests
# $0.005 per 1,000", "GET, SELECT, and all other requests $0.0004 per 1,000".
S3_PUT_USD = 0.005 / 1000  # PUT and LIST
S3_GET_USD = 0.0004 / 1000

# ---------------------------------------------------------------------------------- limits
# Step Functions quotas, https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html
# (read 2026): "Maximum execution history size: 25,000 events" (Standard); "Maximum input or output
# size for a task, state, or execution: 262,144 bytes of data as a UTF-8 encoded string"; names of
# state machines and executions "must not exceed 80 characters"; Express "Maximum execution time:
# 5 minutes".
MAX_HISTORY_EVENTS = 25_000
MAX_PAYLOAD_BYTES = 262_144
MAX_STATE_MACHINE_NAME = 80
MAX_EXECUTION_NAME = 80
MAX_EXPRESS_SECONDS = 300
# Distributed Map ItemReader: ReaderConfig.MaxItems accepts at most 100,000,000 items
# (input-output-itemreader.html, read 2026). The 10 GB object size is the figure commonly given
# for a JSON item source; the AWS pages reachable while writing this did not state it.
MAX_READER_ITEMS = 100_000_000
MAX_READER_BYTES = 10 * 1000**3

# Lambda quotas, https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html (read
# 2026): memory 128 MB to 10,240 MB, timeout 900 seconds, environment variables 4 KB in all (the
# error quotes the JSON it measured), function names 64 characters, /tmp 512 MB unless
# EphemeralStorage (the generated template sets none) raises it to 10,240 MB.
LAMBDA_MIN_MEMORY = 128
LAMBDA_MAX_MEMORY = 10_240
LAMBDA_MAX_TIMEOUT = 900
LAMBDA_MAX_ENVIRONMENT_BYTES = 4096
LAMBDA_MAX_FUNCTION_NAME = 64
LAMBDA_DEFAULT_TMP_BYTES = 512 * 1024**2

# What AWS generates, not lokki-sam: CloudFormation names a function <stack>-<LogicalId>-<suffix>
# (a 12-character suffix), and an S3 bucket name has at most 63 characters (the artifact bucket's
# name is only known after deploy: the checks assume the longest).
GENERATED_SUFFIX = 12
MAX_BUCKET_NAME = 63
TYPICAL_STACK_NAME = 20  # assumed when no stack name is given or configured
