"""What the stages share about storage: SQL files, atomic directories, Parquet stages, DuckDB."""
