"""Run the benchmarks and print each product figure beside its raw baseline (bench/README.md).

    .venv/bin/python -m bench.run                 # everything, SQLite and PostgreSQL, up to 1M events
    .venv/bin/python -m bench.run --quick         # under a minute: small sizes, SQLite (CI's smoke test)
    .venv/bin/python -m bench.run --stores postgres --only rebuild --sizes 10000,100000
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from bench import append, endtoend, rebuild, relay
from bench.common import HEADER, Result, machine
from shared.runtime import tune_gc

BENCHMARKS = ("append", "relay", "rebuild", "e2e", "overload")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes on SQLite: under a minute")
    parser.add_argument("--stores", default=None, help="sqlite,postgres (default both; --quick: sqlite)")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help=f"some of {','.join(BENCHMARKS)}")
    parser.add_argument("--sizes", default=None, help="store sizes (growth): the store appended to, the "
                        "store relayed, the store rebuilt and audited; default 10000,100000,1000000; "
                        "--quick: 5000")
    parser.add_argument("--json", action="store_true", help="also print the results as JSON lines")
    args = parser.parse_args(argv)
    stores = (args.stores or ("sqlite" if args.quick else "sqlite,postgres")).split(",")
    sizes = [int(s) for s in (args.sizes or ("5000" if args.quick else "10000,100000,1000000")).split(",")]
    appends = 500 if args.quick else 5_000
    held = [0] if args.quick else [0, *sizes]
    only = set(args.only.split(","))

    # The product's processes (``consult``, ``python -m services.<name>``) set the cycle
    # collector at start; the benchmarks that call the product in this process do the same.
    tune_gc()
    print(machine())
    print(HEADER, flush=True)
    results: list[Result] = []
    started = time.perf_counter()
    for store in stores:
        runs = []
        if "append" in only:
            runs.append(lambda s=store: append.run(s, appends, held))
        if "relay" in only:
            runs.append(lambda s=store: relay.run(s, [2_000] if args.quick else sizes))
        if "rebuild" in only:
            runs.append(lambda s=store: rebuild.run(s, sizes))
        if "e2e" in only or "overload" in only:
            runs.append(lambda s=store: endtoend.run(s, 2.0 if args.quick else 20.0,
                                                     None if "overload" not in only else 3.0 if args.quick else 60.0))
        for run in runs:
            for result in run():
                results.append(result)
                print(result.row(), flush=True)
                if args.json:
                    print(json.dumps({"name": result.name, "store": result.store, "events": result.events,
                                      "product": result.product, "baseline": result.baseline,
                                      "ratio": result.ratio, "target": result.target, **result.notes},
                                     ensure_ascii=False, default=str))
    print(f"{len(results)} measurements in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
