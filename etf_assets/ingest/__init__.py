"""Ingest: get the archive, unpack it safely, load prices and symbols into DuckDB and stage 1."""
