"""{{ cookiecutter.project_name }}: two steps, one after the other.

    lokki-sam run -p name=Ada           # runs locally (lokki.toml names this flow)
    python src/{{ cookiecutter.project_slug }}/flow.py run --name Ada

Each step is a plain function; on AWS each becomes one Lambda function called by a Step
Functions state machine. Add steps with `.next(...)`, fan out over a list with `.map(...)`
and gather the items again with `.agg(...)`.
"""

from lokki_sam import flow, main, step


@step
def greet(name: str = "world") -> str:
    return f"hello {name}"


@step
def shout(text: str) -> str:
    return text.upper() + "!"


@flow
def {{ cookiecutter.flow_name }}(name: str = "world"):
    return greet(name=name).next(shout)


if __name__ == "__main__":
    main({{ cookiecutter.flow_name }})
