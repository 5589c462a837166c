"""A small model shaped like the ``poly_model`` asset's, for tests, benchmarks and demos.

It is fitted on synthetic data and registered exactly as the pipeline registers its model,
so that the app can be exercised against a real MLflow store without running the pipeline.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import RegressorMixin
from sklearn.pipeline import Pipeline

from etf_assets.constants import FEATURE_COLUMNS, MODEL_ALIAS, MODEL_NAME
from etf_assets.locations import using_tracking_uri
from etf_assets.model.pipeline import make_pipeline

VOL, PRICE = FEATURE_COLUMNS


@dataclass(frozen=True)
class RegisteredModel:
    """A model registered by :func:`register_model`."""

    tracking_uri: str
    name: str
    version: str
    run_id: str
    model: RegressorMixin


def synthetic_features(rows: int, seed: int = 0) -> pd.DataFrame:
    """Feature rows spanning real ranges: volumes from 1e3 to 2e9, prices from 0.5 to 2,000."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            VOL: 10.0 ** rng.uniform(3.0, np.log10(2e9), size=rows),
            PRICE: 10.0 ** rng.uniform(np.log10(0.5), np.log10(2_000.0), size=rows),
        }
    )


def fit_poly_model(rows: int = 2_000, seed: int = 0) -> Pipeline:
    """The asset's pipeline (scale -> degree-2 polynomial -> linear) on synthetic data."""
    features = synthetic_features(rows, seed)
    rng = np.random.default_rng(seed + 1)
    volume = features[VOL] * rng.lognormal(0.0, 0.2, rows) + 50.0 * features[PRICE]
    return make_pipeline().fit(features, volume.rename("volume"))


def register_model(
    store_dir: Path,
    model: RegressorMixin | None = None,
    name: str = MODEL_NAME,
    alias: str = MODEL_ALIAS,
) -> RegisteredModel:
    """Log ``model`` (default :func:`fit_poly_model`) to a SQLite MLflow store in ``store_dir``.

    The model is registered as ``name`` and ``alias`` is moved to the new version. Artifacts go
    under ``store_dir/artifacts``. MLflow's global tracking URI and ``$MLFLOW_TRACKING_URI``
    are restored afterwards.
    """
    import mlflow
    import mlflow.sklearn
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    model = model if model is not None else fit_poly_model()
    store_dir.mkdir(parents=True, exist_ok=True)
    tracking_uri = f"sqlite:///{store_dir / 'mlflow.db'}"
    example = synthetic_features(5, seed=99)
    example.columns = list(getattr(model, "feature_names_in_", example.columns))
    with using_tracking_uri(tracking_uri):
        client = MlflowClient(tracking_uri=tracking_uri)
        experiment = client.get_experiment_by_name("etf_volume_synthetic")
        experiment_id = (
            experiment.experiment_id
            if experiment
            else client.create_experiment(
                "etf_volume_synthetic", artifact_location=(store_dir / "artifacts").as_uri()
            )
        )
        with mlflow.start_run(experiment_id=experiment_id) as run:
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                signature=infer_signature(example, model.predict(example)),
                input_example=example,
                registered_model_name=name,
                pip_requirements=["scikit-learn"],  # skips the slow requirements inference
            )
        version = str(info.registered_model_version)
        client.set_registered_model_alias(name, alias, version)
    return RegisteredModel(tracking_uri, name, version, run.info.run_id, model)
