"""{{ cookiecutter.project_name }}: fan out over a list of birds, make each flappy, join them up.

    lokki-sam run -p limit=2            # runs locally (lokki.toml names this flow)
    python src/{{ cookiecutter.project_slug }}/flow.py run --limit 2

Each step is a plain function; on AWS each becomes one Lambda function, and the `.map()`
becomes a Step Functions Distributed Map with one child per bird.
"""

from lokki_sam import flow, main, step


@step
def get_birds(limit: int = 3) -> list[str]:
    return ["goose", "duck", "seagull", "pelican", "heron"][:limit]


@step
def flap(bird: str) -> str:
    return f"flappy {bird}"


@step
def join(birds: list[str]) -> str:
    return ", ".join(birds)


@flow
def {{ cookiecutter.flow_name }}(limit: int = 3):
    return get_birds(limit=limit).map(flap).agg(join)


if __name__ == "__main__":
    main({{ cookiecutter.flow_name }})
