"""Asset checks run with their assets on real data, and fail on tables broken on purpose."""

from __future__ import annotations

from pathlib import Path

import duckdb


def check_results(result) -> dict[str, tuple[bool, dict]]:
    return {
        e.check_name: (e.passed, {k: v.value for k, v in e.metadata.items()})
        for e in result.get_asset_check_evaluations()
    }


def test_checks_pass_on_real_data_and_count_ohlc_oddities(excerpt_dir: Path, pipeline_factory):
    pipeline = pipeline_factory(excerpt_dir)
    ingest = check_results(pipeline.ingest())
    assert set(ingest) == {
        "unique_symbol_date",
        "no_null_keys",
        "ohlc_sanity",
        "prices_stage_matches_table",
    }
    assert all(passed for passed, _ in ingest.values())
    expected_low_above_open = pipeline.query(
        "SELECT count(*) FROM price_volume_table WHERE low > open"
    )[0][0]
    assert expected_low_above_open > 0  # Open is 0.0 in early years of AA, IP, UNT, HBAN
    assert ingest["ohlc_sanity"][1]["low_above_open"] == expected_low_above_open

    features = check_results(pipeline.features())
    assert set(features) == {
        "every_symbol_has_features",
        "first_29_rows_are_null",
        "features_stage_matches_table",
    }
    assert all(passed for passed, _ in features.values()), features


def test_broken_features_fail_the_blocking_checks(sample_dir: Path, pipeline_factory) -> None:
    pipeline = pipeline_factory(sample_dir)
    assert pipeline.ingest().success
    assert pipeline.features().success
    keys = pipeline.instance.get_dynamic_partitions("symbols")
    with duckdb.connect(pipeline.warehouse.database) as con:
        # Break the table behind the pipeline's back, as a bad manual edit would.
        con.execute("DELETE FROM features_table WHERE symbol = $s", {"s": keys[0]})
        con.execute(
            "UPDATE features_table SET vol_moving_avg = NULL WHERE symbol = $s AND date = "
            "(SELECT max(date) FROM features_table WHERE symbol = $s)",
            {"s": keys[1]},
        )
        con.execute(
            "UPDATE features_table SET adj_close_rolling_med = 1.0 WHERE symbol = $s AND date = "
            "(SELECT min(date) FROM features_table WHERE symbol = $s)",
            {"s": keys[3]},
        )
        con.execute("DELETE FROM features_state")  # so that the next full run repairs everything

    result = pipeline.materialize(["features_table"], partition_key=keys[2], raise_on_error=False)
    checks = check_results(result)
    assert checks["every_symbol_has_features"][0] is False
    assert checks["every_symbol_has_features"][1]["symbols_with_wrong_feature_rows"] == 1
    assert checks["first_29_rows_are_null"][0] is False
    window = checks["first_29_rows_are_null"][1]
    assert window["symbols_breaking_the_rule"] == 2
    rows = dict(pipeline.query("SELECT symbol, count(*) FROM price_volume_table GROUP BY ALL"))
    assert window["first_ones"] == [
        {
            "symbol": keys[1],
            "rows": rows[keys[1]],
            "rows_with_vol_moving_avg": rows[keys[1]] - 30,  # the last row lost its value
            "rows_with_adj_close_rolling_med": rows[keys[1]] - 29,
            "feature_gap": True,  # a row without it after rows with it
        },
        {
            "symbol": keys[3],
            "rows": rows[keys[3]],
            "rows_with_vol_moving_avg": rows[keys[3]] - 29,
            "rows_with_adj_close_rolling_med": rows[keys[3]] - 28,  # the first row got one
            "feature_gap": True,
        },
    ]

    # poly_model, in a run of its own, refuses to train on the table the checks failed.
    refused = pipeline.materialize(["poly_model"], raise_on_error=False)
    assert not refused.success
    [failure] = [e for e in refused.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "every_symbol_has_features" in str(failure.event_specific_data.error)
    assert not (pipeline.data_dir / "mlflow.db").exists()

    assert pipeline.features().success  # a full run repairs the table
    assert all(passed for passed, _ in check_results(pipeline.features()).values())
