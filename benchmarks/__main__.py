"""`make bench`: every benchmark at full scale, each printing its reference side by side."""

import importlib
import sys

BENCHMARKS = [
    "bench_ingest",
    "bench_features",
    "bench_training",
    "bench_serving",
    "bench_end_to_end",
    "bench_cluster",
]


def main() -> None:
    chosen = sys.argv[1:] or BENCHMARKS
    for name in chosen:
        print(f"\n=== {name} ===", flush=True)
        importlib.import_module(f"benchmarks.{name}").main()


if __name__ == "__main__":
    main()
