# Upstream lokki's README.md, Basic Example
# (github.com/alamminsalo/lokki at 7700eb8; MIT licence, (c) 2026 Lokki Contributors).
# Ported for docs/migrating.md: only the import lines changed.
from lokki_sam import step, flow, main

@step
def get_data():
    return [1, 2, 3]

@step
def process_item(item, mult):
    return item * mult

@step
def process_item_2(item):
    return item * item

@step  
def sum_items(items):
    return sum(items)

@flow
def my_flow(mult=2):
    return get_data().map(process_item).next(process_item_2).agg(sum_items)

if __name__ == "__main__":
    main(my_flow)

