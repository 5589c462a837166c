"""The model's shape: the one scikit-learn Pipeline that training fits and serving loads."""

from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import PolynomialFeatures, StandardScaler

DEGREE = 2


def make_pipeline(degree: int = DEGREE) -> Pipeline:
    """The model, unfitted: inputs scaled so that squared volumes (up to 1e18) stay well
    conditioned, then polynomial terms, then least squares."""
    return Pipeline(
        [
            ("scale", StandardScaler()),
            ("poly", PolynomialFeatures(degree=degree, include_bias=False)),
            ("linear", LinearRegression()),
        ]
    )
