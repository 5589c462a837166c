"""Training processes its columns a quarter million rows at a time, in buffers reused from chunk
to chunk, so that no step allocates a temporary as long as the table."""

from collections.abc import Iterator

CHUNK_ROWS = 1 << 18


def chunks(rows: int) -> Iterator[slice]:
    """Consecutive slices of at most CHUNK_ROWS that cover `rows` rows."""
    for start in range(0, rows, CHUNK_ROWS):
        yield slice(start, min(start + CHUNK_ROWS, rows))
