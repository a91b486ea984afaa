# Upstream lokki's README.md, Flow Parameters (the snippet has no import line: added)
# (github.com/alamminsalo/lokki at 7700eb8; MIT licence, (c) 2026 Lokki Contributors).
# Ported for docs/migrating.md: only the import lines changed.
from lokki_sam import flow, main, step

@step
def fetch_data(limit: int = 100):
    return list(range(limit))

@step
def process(item, **kwargs):
    mult = kwargs.get("mult", 1)
    return item * mult

@flow
def paginated_flow(limit: int = 100, mult: int = 2):
    return fetch_data(limit=limit).map(process)

if __name__ == "__main__":
    main(paginated_flow)
