"""Run every benchmark module (``benchmarks/bench_*.py``) or those named on the command line.

Each module exposes ``main(argv: list[str] | None = None) -> int`` and prints its own table.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

import benchmarks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", help="benchmark modules to run (default: all)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("feast").setLevel(logging.WARNING)
    names = args.names or sorted(
        m.name for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.startswith("bench_")
    )
    status = 0
    for name in names:
        module = importlib.import_module(
            f"benchmarks.{name if name.startswith('bench_') else 'bench_' + name}"
        )
        print(f"\n=== {module.__name__} ===", flush=True)
        status |= int(module.main([]) or 0)
    return status


if __name__ == "__main__":
    sys.exit(main())
