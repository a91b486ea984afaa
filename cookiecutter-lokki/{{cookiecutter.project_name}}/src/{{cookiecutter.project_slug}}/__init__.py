"""{{ cookiecutter.project_name }}: the flow lives in flow.py."""
