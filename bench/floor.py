"""The floor and the sequential time of bench/executors.py: the same function over the same
items with no lokki-sam, in a plain ProcessPoolExecutor or a plain loop.

    python bench/floor.py pool|loop FUNCTION N [--workers W] [--start-method M] [NAME=VALUE ...]
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import work


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("pool", "loop"))
    parser.add_argument("function")
    parser.add_argument("n", type=int)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--start-method", help="the pool's multiprocessing start method (default: Python's)")
    parser.add_argument("kwargs", nargs="*", metavar="NAME=VALUE")
    args = parser.parse_intermixed_args()
    kwargs = {name: float(value) if "." in value else int(value) for name, value in (a.split("=") for a in args.kwargs)}
    fn = functools.partial(getattr(work, args.function), **kwargs)
    if args.mode == "loop":
        results = [fn(x) for x in range(args.n)]
    else:
        # Chunks as lokki-sam's units: about 16 per worker, so small items are not one task each.
        chunk = max(1, args.n // (args.workers * 16))
        context = multiprocessing.get_context(args.start_method)
        with ProcessPoolExecutor(args.workers, mp_context=context) as pool:
            results = list(pool.map(fn, range(args.n), chunksize=chunk))
    print(sum(results))


if __name__ == "__main__":
    main()
