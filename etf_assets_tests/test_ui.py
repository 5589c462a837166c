"""End to end in a browser: `dagster dev` on 127.0.0.1, headless Chromium drives the Dagster UI.

On a fresh instance and data folder with the bundled sample, the test opens the asset graph and
finds the five assets; materializes the `ingest` group (its "Materialize all"), which registers
the `symbols` partitions; then launches "Materialize all…" of the whole graph for all partitions
from the global asset graph, a backfill that the daemon runs (`features_table` in one run, by its
single-run backfill policy); waits for success; and opens `features_table`'s partitions view.
The final state is checked without the UI too: the instance's materializations and the DuckDB
tables. Screenshots of every stage go to `test-artifacts/ui/` (with the `dagster dev` log);
`ETF_UPDATE_DOCS_SCREENSHOTS=1` also copies the README's two into `docs/`.

Needs Debian's `chromium` (`/usr/bin/chromium`, or `ETF_CHROMIUM`); skipped without it except
when `CI` is set, where a missing browser fails the test.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from etf_assets_tests.ui_support import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    REPO,
    DagsterDev,
    Deadline,
    poll,
)

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() and not os.environ.get("CI"),
    reason=f"no Chromium at {CHROMIUM} (apt-get install chromium, or set ETF_CHROMIUM); "
    "the browser test always runs when CI is set",
)

ASSETS = ["raw_zip", "price_volume_table", "symbol_table", "features_table", "poly_model"]
INGEST = ["raw_zip", "price_volume_table", "symbol_table"]
STARTUP_SECONDS = 60  # `dagster dev` up and the code location loaded
TEST_SECONDS = 300  # everything after startup; the backfill daemon ticks every 30 s
# Skip the UI's welcome dialog before it shows (`dismiss_community_dialog` covers a renamed key).
COMMUNITY_DIALOG_SEEN = "window.localStorage.setItem('communityNux', '\"1\"')"
DOCS_SCREENSHOTS = {
    "07-asset-graph-materialized.png": "asset-graph.png",
    "08-features-partitions.png": "features-partitions.png",
}


@pytest.fixture
def dagster_ui(
    tmp_path: Path, instance_pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[DagsterDev]:
    """`dagster dev` on a free port with its own DAGSTER_HOME and ETF_DATA_DIR under tmp_path,
    its instance in a fresh database of the tests' Postgres."""
    if not CHROMIUM.exists():  # only when CI is set (otherwise the test is skipped)
        pytest.fail(f"CI is set and there is no Chromium at {CHROMIUM}: .ci/run must install it")
    monkeypatch.setenv("DAGSTER_PG_URL", instance_pg_url)  # the test reads the instance too
    dev = DagsterDev(tmp_path, instance_pg_url)
    leftovers: list[int] = []
    try:
        dev.start()
        dev.wait_ready(STARTUP_SECONDS)
        yield dev
    finally:
        leftovers = dev.stop()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        if dev.log_path.exists():
            shutil.copy(dev.log_path, ARTIFACTS / "dagster-dev.log")
    assert not leftovers, f"processes outlived dagster dev's process group: {leftovers}"


class Shots:
    """Numbered screenshots under test-artifacts/ui/."""

    def __init__(self, page: Page) -> None:
        self.page = page
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "failure.png").unlink(missing_ok=True)

    def __call__(self, name: str, page: Page | None = None) -> Path:
        path = ARTIFACTS / f"{name}.png"
        (page or self.page).screenshot(path=path, timeout=15_000)
        return path


def dismiss_community_dialog(page: Page) -> None:
    """The UI greets a new browser with a "Join the Dagster community" dialog; skip it."""
    dialog = page.get_by_role("dialog").filter(has_text="Join the Dagster community")
    page.add_locator_handler(dialog, lambda: dialog.get_by_role("button", name="Skip").click())


def test_materialize_everything_from_the_ui(dagster_ui: DagsterDev) -> None:
    dev = dagster_ui
    deadline = Deadline(TEST_SECONDS)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True, timeout=30_000
        )
        try:
            context = browser.new_context(viewport={"width": 1600, "height": 900})
            context.set_default_timeout(20_000)
            context.set_default_navigation_timeout(30_000)
            context.add_init_script(COMMUNITY_DIALOG_SEEN)
            page = context.new_page()
            dismiss_community_dialog(page)
            shot = Shots(page)
            try:
                drive_the_ui(page, shot, dev, deadline)
            except BaseException:
                try:
                    shot("failure")
                except Exception:  # noqa: BLE001 - the original error matters more
                    pass
                raise
        finally:
            browser.close()

    if os.environ.get("ETF_UPDATE_DOCS_SCREENSHOTS"):
        (REPO / "docs").mkdir(exist_ok=True)
        for artifact, doc in DOCS_SCREENSHOTS.items():
            shutil.copy(ARTIFACTS / artifact, REPO / "docs" / doc)


def drive_the_ui(page: Page, shot: Shots, dev: DagsterDev, deadline: Deadline) -> None:
    open_the_asset_graph(page, shot, dev)
    materialize_the_ingest_group(page, shot, dev, deadline)
    with dg.DagsterInstance.from_config(str(dev.home)) as instance:
        partitions = instance.get_dynamic_partitions("symbols")
    assert len(partitions) > 10, partitions
    backfill_id = materialize_everything(page, shot, dev, deadline, partitions)
    verify_final_state(dev, partitions, backfill_id)
    show_the_materialized_graph(page, shot, dev, partitions)
    show_the_features_partitions(page, shot, dev, partitions)


def open_the_asset_graph(page: Page, shot: Shots, dev: DagsterDev) -> None:
    """The global asset graph: expand its groups and see the five assets."""
    page.goto(f"{dev.url}/asset-groups")
    expect(page.get_by_text("Global asset lineage", exact=True)).to_be_visible()
    page.get_by_role("button", name="settings", exact=True).click()  # the graph's options
    page.get_by_role("menuitem", name="Expand all groups").click()
    for name in ASSETS:
        expect(page.get_by_text(name, exact=True)).to_be_visible()
    shot("01-asset-graph")


def materialize_the_ingest_group(
    page: Page, shot: Shots, dev: DagsterDev, deadline: Deadline
) -> None:
    """The ingest group's "Materialize all": one run, which registers the symbols partitions."""
    page.goto(f"{dev.url}/locations/etf_assets/asset-groups/ingest")
    for name in INGEST:
        expect(page.get_by_text(name, exact=True)).to_be_visible()
    # No partitioned asset in the group: the button launches a run without a dialog.
    page.get_by_role("button", name=re.compile(r"Materialize all$")).click()
    toast = page.get_by_text(re.compile(r"^Launched run [0-9a-f]{8}$"))
    expect(toast).to_be_visible()
    short_id = toast.inner_text().split()[-1]  # the toast is gone a few seconds later
    shot("02-ingest-launched")
    page.goto(f"{dev.url}/runs")
    page.get_by_role("link", name=short_id).click()
    page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}"))
    run_id = re.search(r"/runs/([0-9a-f-]{36})", page.url).group(1)
    dev.wait_run_success(run_id, deadline.cap(90))
    expect(page.get_by_text("Success", exact=True).first).to_be_visible(timeout=deadline.ms(30))
    shot("03-ingest-run-succeeded")


def materialize_everything(
    page: Page, shot: Shots, dev: DagsterDev, deadline: Deadline, partitions: list[str]
) -> str:
    """The global graph's "Materialize all…" for all partitions: a backfill that the daemon
    runs. Returns the backfill's id once it has succeeded."""
    page.goto(f"{dev.url}/asset-groups")
    page.get_by_role("button", name=re.compile(r"Materialize all…$")).click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(f"materialize {len(ASSETS)} assets")
    dialog.get_by_role("button", name="All", exact=True).click()
    expect(dialog).to_contain_text(f"{len(partitions)} partitions")
    shot("04-materialize-all-dialog")
    launch = dialog.get_by_role("button", name="Launch backfill")
    expect(launch).to_be_enabled()
    launch.click()
    toast = page.get_by_text(re.compile(r"^Created backfill \w+$"))
    expect(toast).to_be_visible()
    backfill_id = toast.inner_text().split()[-1]
    shot("05-backfill-created")

    page.goto(f"{dev.url}/runs/b/{backfill_id}")
    dev.wait_backfill_success(backfill_id, deadline.cap(150))
    status = page.get_by_text("Status", exact=True).locator("xpath=..")
    expect(status).to_contain_text("Succeeded", timeout=deadline.ms(30))
    for name in ASSETS:
        expect(page.get_by_role("link", name=name)).to_be_visible()
    expect(page.get_by_text("100% completed")).to_have_count(len(ASSETS))
    shot("06-backfill-succeeded")
    return backfill_id


def show_the_materialized_graph(
    page: Page, shot: Shots, dev: DagsterDev, partitions: list[str]
) -> None:
    """The graph again, every asset materialized: the README's first screenshot, taken at twice
    the pixel density in a page of its own so that the asset cards stay legible."""
    context = page.context.browser.new_context(
        viewport={"width": 1800, "height": 540}, device_scale_factor=2
    )
    try:
        context.set_default_timeout(20_000)
        context.add_init_script(COMMUNITY_DIALOG_SEEN)
        graph = context.new_page()
        dismiss_community_dialog(graph)
        graph.goto(f"{dev.url}/asset-groups")
        graph.get_by_role("button", name="settings", exact=True).click()
        graph.get_by_role("menuitem", name="Expand all groups").click()
        # Without the navigation's labels the graph fits at a zoom that shows the asset cards.
        graph.get_by_role("button", name="Hide navigation").click()
        graph.reload()
        for name in ASSETS:
            expect(graph.get_by_text(name, exact=True)).to_be_visible()
        try:  # the cards' details show only above a zoom level that depends on the layout
            expect(graph.get_by_text(f"{len(partitions)} partitions", exact=True)).to_be_visible()
            expect(graph.get_by_text("Materialized", exact=True)).to_have_count(len(ASSETS) - 1)
        except AssertionError:
            pass  # a poorer screenshot, not a failure: the backfill page showed the results
        graph.wait_for_timeout(1000)  # let the graph settle after its fit-to-view animation
        shot("07-asset-graph-materialized", graph)
    finally:
        context.close()


def show_the_features_partitions(
    page: Page, shot: Shots, dev: DagsterDev, partitions: list[str]
) -> None:
    """features_table's partitions view: every partition materialized, none missing."""
    page.set_viewport_size({"width": 1400, "height": 760})
    page.goto(f"{dev.url}/assets/features_table?view=partitions")
    page.get_by_role("button", name="Hide navigation").click()
    expect(page.get_by_text(f"Materialized ({len(partitions)})", exact=True)).to_be_visible()
    expect(page.get_by_text("Missing (0)", exact=True)).to_be_visible()
    expect(page.get_by_text("Failed (0)", exact=True)).to_be_visible()
    page.get_by_text(partitions[0], exact=True).first.click()
    expect(page).to_have_url(re.compile(r"partition="))
    expect(page.get_by_text("Materialized", exact=True)).to_be_visible()
    expect(page.get_by_text("Latest materialization", exact=True)).to_be_visible()
    # The metadata's markdown renders a moment later; wait for it, for the screenshot's sake.
    preview = page.get_by_role("row").filter(has_text="preview")
    try:
        expect(preview).to_contain_text("symbol", timeout=5_000)
    except AssertionError:
        pass  # a poorer screenshot, not a failure
    shot("08-features-partitions")


def verify_final_state(dev: DagsterDev, partitions: list[str], backfill_id: str) -> None:
    """What the UI showed, checked in the instance and the warehouse themselves."""
    with dg.DagsterInstance.from_config(str(dev.home)) as instance:
        for name in ASSETS:
            if name != "features_table":
                event = instance.get_latest_materialization_event(dg.AssetKey(name))
                assert event is not None, f"{name} was never materialized"
        materialized = instance.get_materialized_partitions(dg.AssetKey("features_table"))
        assert materialized == set(partitions)
        runs = instance.get_runs()
        assert runs and all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs), [
            (run.run_id, run.status) for run in runs
        ]
        backfill_runs = instance.get_runs(
            filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id})
        )
        ranged = [r for r in backfill_runs if "dagster/asset_partition_range_start" in r.tags]
        assert len(ranged) == 1, "the features of every symbol should be one run"
        assert ranged[0].tags["dagster/asset_partition_range_start"] == partitions[0]
        assert ranged[0].tags["dagster/asset_partition_range_end"] == partitions[-1]

    def connect() -> duckdb.DuckDBPyConnection | None:
        try:
            return duckdb.connect(str(dev.data_dir / "warehouse.duckdb"), read_only=True)
        except duckdb.IOException as exc:  # a run worker still closing its connection
            if "lock" in str(exc).lower():
                return None
            raise

    with poll(connect, 20, "the warehouse's lock") as con:
        price_symbols = distinct_symbols(con, "price_volume_table")
        feature_symbols = distinct_symbols(con, "features_table")
        (price_rows,) = con.execute("SELECT count(*) FROM price_volume_table").fetchone()
        (feature_rows, with_features) = con.execute(
            "SELECT count(*), count(vol_moving_avg) FROM features_table"
        ).fetchone()
    assert feature_symbols == price_symbols == set(partitions)
    assert feature_rows == price_rows > 0
    assert 0 < with_features < feature_rows  # each symbol's first 29 rows have no features
    assert (dev.data_dir / "mlflow.db").is_file()


def distinct_symbols(con: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    return {symbol for (symbol,) in con.execute(f"SELECT DISTINCT symbol FROM {table}").fetchall()}
