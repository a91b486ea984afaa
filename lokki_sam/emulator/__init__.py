"""`lokki-sam emulator`: a local AWS cloud (LocalStack or ministack) on 127.0.0.1, from the installed package.

Each engine runs from a virtual environment lokki-sam builds on first use and caches per engine
version and Python (`venvs.py`): the engines pin packages (botocore, boto3) that cannot share
lokki-sam's own environment. `control.py` starts an engine in the background, waits until it
answers, and records its pid and port (`state.py`) so `stop` ends exactly that process group.

LocalStack runs Lambda functions only in Docker; lokki-sam ships a runtime executor plugin
(`localstack_executor/`, installed into LocalStack's venv by `plugin.py`) that runs each function
as a host subprocess of the Python its runtime names. No module here imports click: the command
line is `lokki_sam.cli.emulator`.
"""
