"""The birds flow: fan out over a few birds, make each flappy, join them up."""

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
def birds(limit: int = 3):
    return get_birds(limit=limit).map(flap).agg(join)


if __name__ == "__main__":
    main(birds)
