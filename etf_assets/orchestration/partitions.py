"""Per-symbol partitions of the features; `symbol_table` registers their keys."""

import dagster as dg

from etf_assets.constants import SYMBOLS_PARTITIONS

symbols_partitions = dg.DynamicPartitionsDefinition(name=SYMBOLS_PARTITIONS)


def sync_symbol_partitions(instance: dg.DagsterInstance, symbols: set[str]) -> tuple[int, int]:
    """Make the partition keys equal `symbols`; return (added, removed) counts."""
    existing = set(instance.get_dynamic_partitions(SYMBOLS_PARTITIONS))
    added = sorted(symbols - existing)
    removed = sorted(existing - symbols)
    if added:
        instance.add_dynamic_partitions(SYMBOLS_PARTITIONS, added)
    for key in removed:
        instance.delete_dynamic_partition(SYMBOLS_PARTITIONS, key)
    return len(added), len(removed)
