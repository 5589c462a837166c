"""Helpers shared by the serving tests."""

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from serving.schema import FEATURES


def model_predict(model: Any, rows: Sequence[Sequence[float]]) -> np.ndarray:
    """The model's own ``predict`` on feature rows, as the pipeline was fitted (a DataFrame)."""
    frame = pd.DataFrame(np.asarray(rows, dtype=np.float64), columns=list(FEATURES))
    return np.asarray(model.predict(frame), dtype=np.float64)


def expected_volumes(model: Any, rows: Sequence[Sequence[float]]) -> list[int]:
    """What the API must answer: the model's own predict, rounded half to even, clipped at 0."""
    return [max(0, round(float(v))) for v in model_predict(model, rows)]


def sample_rows(count: int, seed: int = 0) -> list[tuple[float, float]]:
    """Feature rows from 0 to 1e10 shares and 0 to 1e5 dollars, with fixed edge cases first."""
    rng = np.random.default_rng(seed)
    edges = [
        (0.0, 0.0),
        (12345.0, 25.0),
        (1e9, 25.0),
        (1e9, 0.5),
        (1e9, 3000.0),
        (2e9, 450.0),
        (1e10, 1e5),
        (1.0, 1e-6),
    ]
    volumes = 10.0 ** rng.uniform(0.0, 10.0, count)
    prices = 10.0 ** rng.uniform(-2.0, 5.0, count)
    return edges + list(zip(volumes.tolist(), prices.tolist(), strict=True))
