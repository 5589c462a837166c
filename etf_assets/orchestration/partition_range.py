"""Print the run tags that select every registered symbol partition, for `dagster job execute`.

    dagster job execute -m etf_assets -j features_job \\
        --tags "$(python -m etf_assets.orchestration.partition_range)"

`symbol_table` registers the keys, so run `ingest_job` first; the CLI cannot create them.
"""

import json
import sys

import dagster as dg

from etf_assets.constants import SYMBOLS_PARTITIONS


def range_tags(instance: dg.DagsterInstance) -> dict[str, str]:
    keys = instance.get_dynamic_partitions(SYMBOLS_PARTITIONS)
    if not keys:
        raise SystemExit(
            "no symbol partitions yet: run `dagster job execute -m etf_assets -j ingest_job`"
        )
    return {
        "dagster/asset_partition_range_start": keys[0],
        "dagster/asset_partition_range_end": keys[-1],
    }


def main() -> None:
    with dg.DagsterInstance.get() as instance:
        sys.stdout.write(json.dumps(range_tags(instance)) + "\n")


if __name__ == "__main__":
    main()
