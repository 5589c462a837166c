"""End to end in a browser: `mlflow ui` on 127.0.0.1 over the store two trainings just filled,
headless Chromium on its pages.

The trainings are the project's own (`train_and_register` on a generated `features_table`), so
the store, the experiment, its tag and the registry are what `make run` leaves. The test checks
that the project's link to the experiment opens on the table of training runs (not MLflow's GenAI
overview), that the run page shows the description that says which model wins, that the model
page shows the `champion` alias on the newest version, and that a user who opens the experiment
from MLflow's own list gets there with the "Model training" switch, which the browser then
remembers. Screenshots go to `test-artifacts/mlflow-ui/` (with the server's log);
`ETF_UPDATE_DOCS_SCREENSHOTS=1` also copies the README's three into `docs/`.

Needs Debian's `chromium` (`/usr/bin/chromium`, or `ETF_CHROMIUM`); skipped without it except
when `CI` is set, where a missing browser fails the test.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster_duckdb import DuckDBResource
from mlflow import MlflowClient
from playwright.sync_api import Browser, Page, expect, sync_playwright

from etf_assets.constants import EXPERIMENT_NAME, MODEL_ALIAS, MODEL_NAME, POLY_MODEL
from etf_assets.model.tracking import experiment_url, run_url
from etf_assets.model.train import ModelTraining, train_and_register
from etf_assets_tests.model_fixtures import features_frame, write_features_table
from etf_assets_tests.ui_support import CHROMIUM, CHROMIUM_ARGS, REPO, Deadline, free_port, poll

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() and not os.environ.get("CI"),
    reason=f"no Chromium at {CHROMIUM} (apt-get install chromium, or set ETF_CHROMIUM); "
    "the browser test always runs when CI is set",
)

ARTIFACTS = REPO / "test-artifacts" / "mlflow-ui"
DOCS_SCREENSHOTS = {
    "01-experiment-runs.png": "mlflow-experiment.png",
    "02-run-description.png": "mlflow-run.png",
    "03-registered-model.png": "mlflow-model.png",
}
STARTUP_SECONDS = 60  # `mlflow ui` answers /health
TEST_SECONDS = 120  # each test's page visits
# MLflow 3.17 opens its assistant panel on a browser's first visit; it would cover a third of
# every screenshot. These are the keys the UI itself writes when the panel is closed.
ASSISTANT_CLOSED = """
window.localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true');
window.localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false');
"""


class MlflowUi:
    """`mlflow ui` as `make mlflow-ui` runs it, on a free port, in its own session; `stop` ends
    its process group (the command and the uvicorn server it starts)."""

    def __init__(self, tracking_uri: str, artifact_root: Path, log_path: Path) -> None:
        self.tracking_uri = tracking_uri
        self.artifact_root = artifact_root
        self.log_path = log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        env.update(MLFLOW_DISABLE_TELEMETRY="true", MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
        command = [
            str(Path(sys.executable).parent / "mlflow"),
            "ui",
            "--workers",
            "1",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--backend-store-uri",
            self.tracking_uri,
            "--default-artifact-root",
            str(self.artifact_root),
        ]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def wait_ready(self, timeout: float) -> None:
        def answers() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"mlflow ui exited with {self.process.returncode}:\n" + (self.log_tail())
                )
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=5) as response:
                    return response.status == 200
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                return False

        poll(answers, timeout, f"{self.url}/health", interval=0.5)

    def stop(self) -> None:
        if self.process is None:
            return
        for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue


@pytest.fixture(scope="module")
def trainings(tmp_path_factory: pytest.TempPathFactory) -> list[ModelTraining]:
    """Two trainings on a generated features_table, logged to a fresh sqlite store: the second
    is the champion."""
    data_dir = tmp_path_factory.mktemp("mlflow_ui_data")
    database = write_features_table(data_dir / "warehouse.duckdb", features_frame(noise=0.01))
    tracking_uri = f"sqlite:///{data_dir}/mlflow.db"
    warehouse = DuckDBResource(database=str(database))
    return [
        train_and_register(warehouse, tracking_uri, run_name=f"{POLY_MODEL}-ui-test-{n}")
        for n in (1, 2)
    ]


@pytest.fixture
def mlflow_ui(trainings: list[ModelTraining]) -> Iterator[MlflowUi]:
    if not CHROMIUM.exists():  # only when CI is set (otherwise the test is skipped)
        pytest.fail(f"CI is set and there is no Chromium at {CHROMIUM}: .ci/run must install it")
    tracking_uri = trainings[-1].tracked.tracking_uri
    store_dir = Path(tracking_uri.removeprefix("sqlite:///")).parent
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    ui = MlflowUi(tracking_uri, store_dir / "mlartifacts", store_dir / "mlflow-ui.log")
    try:
        ui.start()
        ui.wait_ready(STARTUP_SECONDS)
        yield ui
    finally:
        ui.stop()
        if ui.log_path.exists():
            shutil.copy(ui.log_path, ARTIFACTS / "mlflow-ui.log")


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True, timeout=30_000
        )
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser: Browser, deadline: Deadline, height: int = 820) -> Page:
    """A page in a fresh browser profile (nothing remembered), the assistant panel closed."""
    context = browser.new_context(viewport={"width": 1400, "height": height})
    context.set_default_timeout(deadline.ms(20))
    context.set_default_navigation_timeout(deadline.ms(30))
    context.add_init_script(ASSISTANT_CLOSED)
    return context.new_page()


def shot(page: Page, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=path, timeout=15_000)
    return path


@contextlib.contextmanager
def on_failure_shot(page: Page, name: str) -> Iterator[None]:
    """Run the block; on an error, screenshot the page before the error goes on."""
    try:
        yield
    except BaseException:
        try:
            shot(page, f"failure-{name}")
        except Exception:  # noqa: BLE001 - the original error matters more
            pass
        raise


def expect_training_runs(page: Page, experiment_id: str, run_names: list[str]) -> None:
    """The experiment's table of training runs, not the GenAI overview."""
    expect(page).to_have_url(re.compile(rf"#/experiments/{experiment_id}/runs\b"))
    expect(page.get_by_role("heading", name="Runs")).to_be_visible()
    for name in run_names:
        expect(page.get_by_role("link", name=name, exact=True)).to_be_visible()
    expect(page.get_by_text(f"{len(run_names)} matching runs")).to_be_visible()
    expect(page.get_by_role("heading", name="Overview")).to_have_count(0)


def test_project_links_open_the_training_runs_the_run_and_the_champion(
    mlflow_ui: MlflowUi, browser: Browser, trainings: list[ModelTraining]
) -> None:
    deadline = Deadline(TEST_SECONDS)
    champion = trainings[-1].tracked
    experiment_id = trainings_experiment(trainings)
    run_names = [f"{POLY_MODEL}-ui-test-{n}" for n in (1, 2)]
    page = new_page(browser, deadline, height=480)  # the table of two runs, without blank space
    with on_failure_shot(page, "links"):
        # The link the poly_model asset and the README give, on this server.
        page.goto(experiment_url(mlflow_ui.url, experiment_id))
        expect_training_runs(page, experiment_id, run_names)
        shot(page, "01-experiment-runs")

        page.set_viewport_size({"width": 1400, "height": 1000})
        page.goto(run_url(mlflow_ui.url, experiment_id, champion.run_id))
        expect(page.get_by_role("heading", name=run_names[-1])).to_be_visible()
        page.get_by_text("Show more", exact=True).click()  # the description, unfolded
        description = page.get_by_text("What the numbers say")
        expect(description).to_be_visible()
        expect(page.get_by_text("Leakage-free (lagged) features:")).to_be_visible()
        expect(page.get_by_text(re.compile(r"^The polynomial has the best R\^2"))).to_have_count(2)
        shot(page, "02-run-description")

        # The artifacts, read from the store's folder: metrics.jsonl, name and value first.
        page.get_by_role("tab", name="Artifacts").click()
        page.get_by_text("metrics.jsonl", exact=True).first.click()
        expect(page.get_by_text('{"name": "time_poly_mae", "value": ').first).to_be_visible()
        shot(page, "02b-metrics-jsonl")

        page.goto(f"{mlflow_ui.url}/#/models/{MODEL_NAME}?workflowType=machine_learning")
        expect(page.get_by_role("heading", name=MODEL_NAME)).to_be_visible()
        expect(page.get_by_text("Predicts a day's trading")).to_be_visible()
        newest = page.get_by_role("row").filter(has_text=f"Version {champion.model_version}")
        expect(newest).to_contain_text(MODEL_ALIAS)
        older = page.get_by_role("row").filter(has_text="Version 1")
        expect(older).to_be_visible()
        expect(older).not_to_contain_text(MODEL_ALIAS)
        shot(page, "03-registered-model")

    if os.environ.get("ETF_UPDATE_DOCS_SCREENSHOTS"):
        (REPO / "docs").mkdir(exist_ok=True)
        for artifact, doc in DOCS_SCREENSHOTS.items():
            shutil.copy(ARTIFACTS / artifact, REPO / "docs" / doc)


def test_from_mlflows_own_list_one_switch_to_model_training_is_remembered(
    mlflow_ui: MlflowUi, browser: Browser, trainings: list[ModelTraining]
) -> None:
    """What the README tells a user who opens http://127.0.0.1:5000 and clicks the experiment:
    MLflow 3.17 decides the view per browser (GenAI by default), and the "Model training" switch
    at the top of its sidebar, clicked once, brings the training runs, now and on later visits."""
    deadline = Deadline(TEST_SECONDS)
    experiment_id = trainings_experiment(trainings)
    run_names = [f"{POLY_MODEL}-ui-test-{n}" for n in (1, 2)]
    page = new_page(browser, deadline)
    # MLflow's GenAI overview greets a new browser with a popover over its switch.
    got_it = page.get_by_role("button", name="Got it")
    page.add_locator_handler(got_it, lambda: got_it.click())
    with on_failure_shot(page, "switch"):
        page.goto(f"{mlflow_ui.url}/#/experiments")
        page.get_by_role("link", name=EXPERIMENT_NAME, exact=True).click()
        expect(page).to_have_url(re.compile(rf"#/experiments/{experiment_id}/"))
        page.get_by_text("Model training", exact=True).click()
        expect_training_runs(page, experiment_id, run_names)

        page.goto(f"{mlflow_ui.url}/#/experiments/{experiment_id}")  # no query: remembered
        expect_training_runs(page, experiment_id, run_names)
        shot(page, "04-after-the-switch")


def trainings_experiment(trainings: list[ModelTraining]) -> str:
    tracked = trainings[-1].tracked
    return (
        MlflowClient(tracking_uri=tracked.tracking_uri).get_run(tracked.run_id).info.experiment_id
    )
