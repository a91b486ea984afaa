# Upstream lokki's README.md, Quick Start
# (github.com/alamminsalo/lokki at 7700eb8; MIT licence, (c) 2026 Lokki Contributors).
# Ported for docs/migrating.md: only the import lines changed.
from lokki_sam import flow, step

@step
def get_birds() -> list[str]:
    return ["goose", "duck", "seagull"]

@step
def flap_bird(bird: str) -> str:
    return f"flappy {bird}"

@step
def join_birds(birds: list[str]) -> str:
    return ", ".join(birds)

@flow
def birds_flow():
    return get_birds().map(flap_bird).agg(join_birds)

if __name__ == "__main__":
    from lokki_sam import main
    main(birds_flow)
