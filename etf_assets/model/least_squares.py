"""Ordinary least squares from Gram matrices, and the fitted scikit-learn Pipeline built from them.

The model is `make_pipeline()`: StandardScaler -> PolynomialFeatures -> LinearRegression. Its last
step is ordinary least squares, which depends on the rows only through the Gram matrix of
[1, polynomial terms of the standardized features, volume]. So a fit needs no pass over the rows
of its own: `LeastSquares.solve` finds the solution `Pipeline.fit` finds from a Gram matrix, and
`fitted_pipeline` writes it, with the scaler's statistics, into the attributes `Pipeline.fit`
sets, so that the registered model is a regular fitted Pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from etf_assets.constants import FEATURE_COLUMNS
from etf_assets.model.chunks import CHUNK_ROWS, chunks
from etf_assets.model.pipeline import make_pipeline


@dataclass(frozen=True)
class Moments:
    """Row count, mean and sum of squared deviations from the mean of a column: its mean and
    (population) variance. Those of separate row sets combine into those of all their rows
    (Chan, Golub and LeVeque's pairwise update)."""

    rows: int
    mean: float
    squares: float

    @classmethod
    def of(cls, column: np.ndarray) -> Moments:
        """In two chunked passes: no full-length temporary."""
        mean = sum(float(column[part].sum()) for part in chunks(len(column))) / len(column)
        squares = sum(float(((column[part] - mean) ** 2).sum()) for part in chunks(len(column)))
        return cls(len(column), mean, squares)

    def __add__(self, other: Moments) -> Moments:
        rows = self.rows + other.rows
        delta = other.mean - self.mean
        return Moments(
            rows,
            self.mean + delta * other.rows / rows,
            self.squares + other.squares + delta**2 * self.rows * other.rows / rows,
        )

    @property
    def var(self) -> float:
        return self.squares / self.rows


@dataclass(frozen=True)
class Standardization:
    """What StandardScaler learns from the two features: means, variances and the scales it
    divides by (1 for a constant feature, which passes through centered)."""

    mean: np.ndarray
    var: np.ndarray
    scale: np.ndarray

    @classmethod
    def of(cls, x1: np.ndarray, x2: np.ndarray) -> Standardization:
        return cls.from_moments(Moments.of(x1), Moments.of(x2))

    @classmethod
    def from_moments(cls, first: Moments, second: Moments) -> Standardization:
        mean, var = np.array([first.mean, second.mean]), np.array([first.var, second.var])
        scale = np.sqrt(var)
        scale[scale == 0] = 1.0
        return cls(mean, var, scale)


def _fitted_on_placeholder(degree: int) -> Pipeline:
    """`make_pipeline(degree)` fitted on one placeholder row, so that every attribute
    scikit-learn sets in `fit` exists with its own type (feature names, input counts,
    PolynomialFeatures' powers)."""
    pipeline = make_pipeline(degree)
    placeholder = pd.DataFrame(np.zeros((1, len(FEATURE_COLUMNS))), columns=list(FEATURE_COLUMNS))
    return pipeline.fit(placeholder, np.zeros(1))


def polynomial_powers(degree: int) -> np.ndarray:
    """The exponents of both features in each term `make_pipeline(degree)` regresses on."""
    return _fitted_on_placeholder(degree).named_steps["poly"].powers_


class Design:
    """The rows [1, polynomial terms of the standardized features..., volume - offset] of a
    chunk, transposed (one row per term), written into buffers reused from chunk to chunk."""

    def __init__(
        self, standardization: Standardization, powers: np.ndarray, volume_offset: float
    ) -> None:
        self.standardization, self.powers = standardization, powers
        self.volume_offset = volume_offset
        self.width = len(powers) + 2
        self._z = np.empty((2, CHUNK_ROWS))
        self._buffer = np.empty((self.width, CHUNK_ROWS))

    def fill(self, x1: np.ndarray, x2: np.ndarray, volume: np.ndarray | None) -> np.ndarray:
        rows = len(x1)
        z, design = self._z[:, :rows], self._buffer[:, :rows]
        mean, scale = self.standardization.mean, self.standardization.scale
        for j, x in enumerate((x1, x2)):
            np.subtract(x, mean[j], out=z[j])
            z[j] /= scale[j]
        design[0] = 1.0
        for term, power in enumerate(self.powers, start=1):
            design[term] = 1.0
            for j, exponent in enumerate(power):
                for _ in range(int(exponent)):
                    design[term] *= z[j]
        if volume is not None:
            np.subtract(volume, self.volume_offset, out=design[-1])
        return design

    def copy(self) -> Design:
        """The same design with buffers of its own (one per thread)."""
        return Design(self.standardization, self.powers, self.volume_offset)

    def __reduce__(self) -> tuple[type[Design], tuple[Standardization, np.ndarray, float]]:
        # Pickled (sent to a task) as its parameters: the receiver allocates its own buffers.
        return Design, (self.standardization, self.powers, self.volume_offset)


@dataclass(frozen=True)
class LeastSquares:
    """volume ~ intercept + coef . terms[which], solved from a Gram matrix of design rows."""

    which: list[int]
    intercept: float
    coef: np.ndarray
    rank: int
    singular: np.ndarray

    @classmethod
    def solve(cls, gram: np.ndarray, which: list[int], volume_offset: float) -> LeastSquares:
        n = gram[0, 0]
        if n < 1:
            raise ValueError("no rows to fit")
        x = np.asarray(which) + 1
        mean_x, mean_y = gram[0, x] / n, gram[0, -1] / n
        # Centered cross-products (what LinearRegression's centering produces), then a diagonal
        # rescaling so that the solve sees a correlation matrix.
        sxx = gram[np.ix_(x, x)] - n * np.outer(mean_x, mean_x)
        sxy = gram[x, -1] - n * mean_x * mean_y
        if not (np.isfinite(sxx).all() and np.isfinite(sxy).all()):
            raise ValueError("features or target are not finite numbers")
        d = np.sqrt(np.clip(np.diag(sxx), 0.0, None))
        d[d == 0] = 1.0
        scaled, *_ = np.linalg.lstsq(sxx / np.outer(d, d), sxy / d, rcond=None)
        coef = scaled / d
        singular = np.sqrt(np.clip(np.linalg.eigvalsh(sxx), 0.0, None))[::-1]
        tolerance = np.finfo(float).eps * max(n, len(x)) * singular[0]
        return cls(
            which=which,
            intercept=float(mean_y - mean_x @ coef + volume_offset),
            coef=coef,
            rank=int((singular > tolerance).sum()),
            singular=singular,
        )

    def weights(self, width: int) -> np.ndarray:
        """Coefficients over the design rows [1, terms...] (zero for terms it does not use)."""
        weights = np.zeros(width - 1)
        weights[0] = self.intercept
        weights[np.asarray(self.which) + 1] = self.coef
        return weights

    def predict(self, design: Design, x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
        weights = self.weights(design.width)
        out = np.empty(len(x1))
        for part in chunks(len(x1)):
            out[part] = weights @ design.fill(x1[part], x2[part], None)[:-1]
        return out


def fitted_pipeline(
    degree: int, standardization: Standardization, rows: int, fit: LeastSquares
) -> Pipeline:
    """The fitted `make_pipeline(degree)` with the parameters `Pipeline.fit` learns on `rows` rows
    whose features standardize as `standardization` and whose least-squares solution is `fit`:
    the placeholder fit's statistics replaced by those of the real rows."""
    pipeline = _fitted_on_placeholder(degree)
    scaler: StandardScaler = pipeline.named_steps["scale"]
    scaler.n_samples_seen_ = type(scaler.n_samples_seen_)(rows)
    scaler.mean_ = standardization.mean
    scaler.var_ = standardization.var
    scaler.scale_ = standardization.scale
    linear: LinearRegression = pipeline.named_steps["linear"]
    linear.coef_, linear.intercept_ = fit.coef, type(linear.intercept_)(fit.intercept)
    linear.rank_, linear.singular_ = fit.rank, fit.singular
    return pipeline
