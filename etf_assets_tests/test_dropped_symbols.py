"""An archive without a symbol that an earlier one had: the next features run must not keep the
dropped symbol's rows (the blocking check `every_symbol_has_features` would fail every later
run, and `make run` with it, until someone deleted them by hand)."""

from __future__ import annotations

import shutil
from pathlib import Path

from etf_assets.ingest.sample_archive import SampleSpec, generate_folder


def test_features_of_a_dropped_symbol_go_with_it(pipeline_factory, tmp_path: Path) -> None:
    first = tmp_path / "first"
    generate_folder(SampleSpec(stocks=8, etfs=2, rows=120, seed=31), first)
    pipeline = pipeline_factory(first)
    assert pipeline.ingest().success
    assert pipeline.features().success
    dropped = sorted((first / "stocks").glob("*.csv"))[-1].name.removesuffix(".csv")
    kept = pipeline.query("SELECT count(*) FROM features_table WHERE symbol = ?", [dropped])
    assert kept[0][0] > 0

    second = tmp_path / "second"
    shutil.copytree(first, second)
    (second / "stocks" / f"{dropped}.csv").unlink()
    pipeline.use_source(second)
    assert pipeline.ingest().success
    assert pipeline.features().success  # with its blocking checks

    stage = str(pipeline.settings.features_stage / "*.parquet")
    assert pipeline.query(
        f"""SELECT (SELECT count(*) FROM features_table WHERE symbol = $s),
                   (SELECT count(content_hash) FROM features_state WHERE symbol = $s),
                   (SELECT count(*) FROM read_parquet('{stage}') WHERE "Symbol" = $s)""",
        {"s": dropped},
    ) == [(0, 0, 0)]
    assert pipeline.query("SELECT count(*) FROM features_table") == pipeline.query(
        "SELECT count(*) FROM price_volume_table"
    )
