"""The embedded default: ``engines.run(flow, backend="sqlite:///...")`` with no app configured.

Run in a fresh process with no ``CELERYFLOW_*`` settings in its environment::

    python -m bench.embedded --shape linear --n 100 --runs 5 --backend sqlite:////tmp/x.db

prints one JSON line ``{"times": [...]}``. A 5-atom warm-up flow first starts the
in-process worker and creates the schema; it is not counted.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=("linear", "unordered", "dag"), required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--backend", required=True)
    args = parser.parse_args(argv)
    from bench import atoms
    from celeryflow import engines

    factory = {"linear": atoms.linear, "unordered": atoms.unordered, "dag": atoms.random_dag}[args.shape]
    engines.run(atoms.linear(5), backend=args.backend)
    times = []
    for _ in range(args.runs):
        flow = factory(args.n)
        started = time.perf_counter()
        engines.run(flow, backend=args.backend)
        times.append(time.perf_counter() - started)
    print(json.dumps({"times": times, "shape": args.shape, "atoms": args.n}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
