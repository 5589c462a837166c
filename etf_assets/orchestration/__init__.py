"""The Dagster layer: assets, checks, jobs, automation, partitions and resources over the stages."""
