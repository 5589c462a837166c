"""Predictors derived from the fitted model: an exact closed form, or the model's own predict.

The registered model is ``Pipeline([StandardScaler, PolynomialFeatures(2), LinearRegression])``.
Calling its ``predict`` for one row is dominated by overhead (input validation, a DataFrame,
three transformers); the same value is a quadratic polynomial in the scaled inputs, which
:class:`QuadraticPredictor` evaluates with a few float operations, in the same order as
scikit-learn does. Any other model is served through :class:`PipelinePredictor`.

A worker that serves the closed form needs only numpy: scikit-learn and pandas are imported
where a fitted model is inspected (:func:`quadratic_form`) or called (:class:`PipelinePredictor`),
never when this module is.
"""

import math
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np


class Predictor(Protocol):
    """What the endpoints need from a model: raw predictions for one row or many."""

    kind: str

    def predict_one(self, row: Sequence[float]) -> float:
        """Predict one row of features (in the model's feature order)."""
        ...

    def predict_many(self, rows: np.ndarray) -> np.ndarray:
        """Predict an ``(n, n_features)`` float array; returns ``n`` floats."""
        ...


class QuadraticPredictor:
    """Closed-form evaluation of a fitted scaler -> degree-2 polynomial -> linear pipeline.

    With ``z = (x - mean) / scale``, the prediction is ``sum_k coef[k] * prod(z ** powers[k])
    + intercept``: terms of degree 0, 1 or 2, each computed as scikit-learn computes it.
    """

    kind = "closed-form"

    def __init__(
        self,
        mean: np.ndarray,
        scale: np.ndarray,
        powers: np.ndarray,
        coef: np.ndarray,
        intercept: float,
    ) -> None:
        self._powers = np.asarray(powers, dtype=int)
        self._mean = tuple(float(m) for m in mean)
        self._scale = tuple(float(s) for s in scale)
        self._mean_arr = np.asarray(mean, dtype=np.float64)
        self._scale_arr = np.asarray(scale, dtype=np.float64)
        self._coef = np.asarray(coef, dtype=np.float64)
        self._intercept = float(intercept)
        # Each term as (coefficient, indices of the scaled inputs it multiplies): () is the
        # constant term, (i,) is z_i, (i, j) is z_i * z_j.
        self._terms: list[tuple[float, tuple[int, ...]]] = []
        for c, row in zip(self._coef, self._powers, strict=True):
            indices = tuple(i for i, p in enumerate(row) for _ in range(int(p)))
            self._terms.append((float(c), indices))

    def predict_one(self, row: Sequence[float]) -> float:
        """Predict one row with plain float arithmetic (no numpy call)."""
        z = [(x - m) / s for x, m, s in zip(row, self._mean, self._scale, strict=True)]
        total = 0.0
        for c, idx in self._terms:
            if len(idx) == 2:
                total += c * (z[idx[0]] * z[idx[1]])
            elif idx:
                total += c * z[idx[0]]
            else:
                total += c
        return total + self._intercept

    def predict_many(self, rows: np.ndarray) -> np.ndarray:
        """Predict an ``(n, n_features)`` array with a handful of vectorized operations."""
        z = (np.asarray(rows, dtype=np.float64) - self._mean_arr) / self._scale_arr
        ones = np.ones(len(z))
        columns = []
        for _, idx in self._terms:
            if len(idx) == 2:
                columns.append(z[:, idx[0]] * z[:, idx[1]])
            elif idx:
                columns.append(z[:, idx[0]])
            else:
                columns.append(ones)
        return np.column_stack(columns) @ self._coef + self._intercept

    def parameters(self) -> dict[str, Any]:
        """The closed form as plain JSON data; :meth:`from_parameters` rebuilds it exactly
        (floats round-trip through JSON unchanged)."""
        return {
            "mean": list(self._mean),
            "scale": list(self._scale),
            "powers": self._powers.tolist(),
            "coef": self._coef.tolist(),
            "intercept": self._intercept,
        }

    @classmethod
    def from_parameters(cls, parameters: dict[str, Any]) -> "QuadraticPredictor":
        """The predictor whose :meth:`parameters` these are."""
        return cls(
            np.asarray(parameters["mean"], dtype=np.float64),
            np.asarray(parameters["scale"], dtype=np.float64),
            np.asarray(parameters["powers"], dtype=int),
            np.asarray(parameters["coef"], dtype=np.float64),
            float(parameters["intercept"]),
        )


class PipelinePredictor:
    """Any fitted scikit-learn regressor, called through its own ``predict``."""

    kind = "model-predict"

    def __init__(self, model: Any, features: Sequence[str]) -> None:
        self.model = model
        self.features = tuple(features)

    def predict_one(self, row: Sequence[float]) -> float:
        """Predict one row through the model."""
        return float(self.predict_many(np.asarray([row], dtype=np.float64))[0])

    def predict_many(self, rows: np.ndarray) -> np.ndarray:
        """Predict many rows through the model, as a DataFrame with the feature names."""
        import pandas as pd

        frame = pd.DataFrame(np.asarray(rows, dtype=np.float64), columns=list(self.features))
        return np.asarray(self.model.predict(frame), dtype=np.float64).reshape(-1)


def quadratic_form(model: Any) -> QuadraticPredictor | None:
    """Derive the closed form of ``model`` if it is scaler -> polynomial (degree <= 2) -> linear.

    Returns:
        The predictor, or None when the model has any other structure.
    """
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import PolynomialFeatures, StandardScaler

    if not isinstance(model, Pipeline) or len(model.steps) != 3:
        return None
    scaler, poly, linear = (step for _, step in model.steps)
    if not (
        type(scaler) is StandardScaler
        and type(poly) is PolynomialFeatures
        and type(linear) is LinearRegression
    ):
        return None
    powers = getattr(poly, "powers_", None)
    coef = np.asarray(getattr(linear, "coef_", np.empty(0)), dtype=np.float64)
    n_features = getattr(scaler, "n_features_in_", None)
    if powers is None or n_features is None or powers.shape[1] != n_features:
        return None
    if powers.sum(axis=1).max(initial=0) > 2 or coef.size != powers.shape[0]:
        return None  # cubic terms, or several targets
    mean = scaler.mean_ if scaler.with_mean else np.zeros(n_features)
    scale = scaler.scale_ if scaler.with_std else np.ones(n_features)
    intercept = np.asarray(linear.intercept_, dtype=np.float64).reshape(-1)
    if intercept.size != 1:
        return None
    return QuadraticPredictor(mean, scale, powers, coef.reshape(-1), float(intercept[0]))


def make_predictor(model: Any, features: Sequence[str]) -> Predictor:
    """The fastest exact predictor for ``model``: the closed form if it has one, else predict."""
    return quadratic_form(model) or PipelinePredictor(model, features)


def to_volume(prediction: float) -> int | None:
    """A raw prediction as a volume: rounded half to even, never negative; None if not finite."""
    if not math.isfinite(prediction):
        return None
    return max(0, round(prediction))


def to_volumes(predictions: np.ndarray) -> list[int] | None:
    """:func:`to_volume` for an array, vectorized; None if any prediction is not finite."""
    if not np.isfinite(predictions).all():
        return None
    rounded = np.maximum(np.rint(predictions), 0.0)
    if rounded.size and rounded.max() >= 2.0**63:
        return [int(v) for v in rounded]
    return rounded.astype(np.int64).tolist()
