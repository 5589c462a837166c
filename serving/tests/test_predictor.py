"""The closed-form predictor equals the model's own predict; other models fall back to it."""

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import PolynomialFeatures, StandardScaler

from serving.predictor import (
    PipelinePredictor,
    QuadraticPredictor,
    make_predictor,
    quadratic_form,
    to_volume,
    to_volumes,
)
from serving.schema import FEATURES

from .helpers import model_predict, sample_rows
from .synthetic import fit_poly_model, synthetic_features

RTOL = 1e-9
_MODEL = fit_poly_model()  # module-level so that the hypothesis test can use it too


def _atol(raw: np.ndarray) -> float:
    # Terms of ~1e9 cancel to small predictions: allow a few ulps of the largest magnitude.
    return 1e-6 * max(1.0, float(np.max(np.abs(raw))) * 1e-9)


def _fit(pipeline: Pipeline, seed: int = 0) -> Pipeline:
    features = synthetic_features(400, seed)
    target = features[FEATURES[0]] * 0.8 + 30.0 * features[FEATURES[1]] ** 1.5
    return pipeline.fit(features, target)


@pytest.fixture(scope="module")
def model() -> Pipeline:
    return _MODEL


def test_asset_shaped_model_gets_the_closed_form(model: Pipeline) -> None:
    predictor = make_predictor(model, FEATURES)
    assert isinstance(predictor, QuadraticPredictor)
    assert predictor.kind == "closed-form"


def test_closed_form_equals_predict_row_by_row(model: Pipeline) -> None:
    rows = sample_rows(3_000)
    fast = np.array([quadratic_form(model).predict_one(row) for row in rows])
    slow = model_predict(model, rows)
    np.testing.assert_allclose(fast, slow, rtol=RTOL, atol=_atol(slow))
    assert [to_volume(v) for v in fast] == [to_volume(v) for v in slow]


def test_closed_form_equals_predict_vectorized(model: Pipeline) -> None:
    rows = sample_rows(20_000, seed=1)
    fast = quadratic_form(model).predict_many(np.asarray(rows))
    slow = model_predict(model, rows)
    np.testing.assert_allclose(fast, slow, rtol=RTOL, atol=_atol(slow))
    assert to_volumes(fast) == to_volumes(slow)


def test_big_volumes_give_identical_integers(model: Pipeline) -> None:
    rows = [(v, p) for v in (1e9, 1.5e9, 2e9, 5e9, 1e12, 1e15) for p in (0.5, 25.0, 3e3, 1e15)]
    slow = model_predict(model, rows)
    predictor = quadratic_form(model)
    assert [to_volume(predictor.predict_one(r)) for r in rows] == [to_volume(v) for v in slow]
    assert to_volumes(predictor.predict_many(np.asarray(rows))) == to_volumes(slow)
    assert to_volume(predictor.predict_one((1e9, 25.0))) > 5e8  # a real prediction, not a clip


@settings(max_examples=150, deadline=None)
@given(
    volume=st.floats(min_value=0, max_value=1e12, allow_nan=False, allow_infinity=False),
    price=st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False),
)
def test_closed_form_equals_predict_property(volume: float, price: float) -> None:
    slow = model_predict(_MODEL, [(volume, price)])
    fast = quadratic_form(_MODEL).predict_one((volume, price))
    assert math.isclose(fast, slow[0], rel_tol=RTOL, abs_tol=_atol(slow))
    assert to_volume(fast) == to_volume(slow[0])


@pytest.mark.parametrize(
    "steps",
    [
        [StandardScaler(with_mean=False), PolynomialFeatures(2, include_bias=False)],
        [StandardScaler(with_std=False), PolynomialFeatures(2, include_bias=False)],
        [StandardScaler(), PolynomialFeatures(2, include_bias=True)],
        [StandardScaler(), PolynomialFeatures(2, interaction_only=True, include_bias=False)],
        [StandardScaler(), PolynomialFeatures(1, include_bias=False)],
    ],
    ids=["no-mean", "no-std", "bias", "interaction-only", "degree-1"],
)
def test_closed_form_covers_variants_of_the_pipeline(steps: list) -> None:
    model = _fit(Pipeline([("s", steps[0]), ("p", steps[1]), ("l", LinearRegression())]))
    rows = sample_rows(2_000, seed=2)
    predictor = quadratic_form(model)
    assert predictor is not None
    slow = model_predict(model, rows)
    fast = predictor.predict_many(np.asarray(rows))
    np.testing.assert_allclose(fast, slow, rtol=RTOL, atol=_atol(slow))
    one = np.array([predictor.predict_one(r) for r in rows])
    np.testing.assert_allclose(one, slow, rtol=RTOL, atol=_atol(slow))


@pytest.mark.parametrize(
    "model",
    [
        Pipeline(
            [("s", StandardScaler()), ("p", PolynomialFeatures(3)), ("l", LinearRegression())]
        ),
        Pipeline([("s", StandardScaler()), ("p", PolynomialFeatures(2)), ("l", Ridge())]),
        Pipeline([("p", PolynomialFeatures(2)), ("l", LinearRegression())]),
        GradientBoostingRegressor(n_estimators=5),
    ],
    ids=["cubic", "ridge", "no-scaler", "not-a-pipeline"],
)
def test_other_models_fall_back_to_their_own_predict(model) -> None:
    model = _fit(model)
    assert quadratic_form(model) is None
    predictor = make_predictor(model, FEATURES)
    assert isinstance(predictor, PipelinePredictor)
    rows = sample_rows(50)
    np.testing.assert_array_equal(
        predictor.predict_many(np.asarray(rows)), model_predict(model, rows)
    )
    assert predictor.predict_one(rows[1]) == model_predict(model, rows[1:2])[0]


def test_multi_target_regression_falls_back() -> None:
    features = synthetic_features(200)
    target = np.column_stack([features[FEATURES[0]], features[FEATURES[1]]])
    model = Pipeline(
        [("s", StandardScaler()), ("p", PolynomialFeatures(2)), ("l", LinearRegression())]
    ).fit(features, target)
    assert quadratic_form(model) is None


@pytest.mark.parametrize(
    ("raw", "volume"),
    [
        (10350.4, 10350),
        (10350.6, 10351),
        (0.5, 0),
        (1.5, 2),
        (2.5, 2),
        (-0.4, 0),
        (-1e9, 0),
        (1e19, 10**19),
        (0.0, 0),
    ],
)
def test_volumes_are_rounded_half_to_even_and_never_negative(raw: float, volume: int) -> None:
    assert to_volume(raw) == volume
    assert type(to_volume(raw)) is int
    assert to_volumes(np.array([raw])) == [volume]


@pytest.mark.parametrize("raw", [math.nan, math.inf, -math.inf])
def test_non_finite_predictions_have_no_volume(raw: float) -> None:
    assert to_volume(raw) is None
    assert to_volumes(np.array([1.0, raw])) is None


def test_volumes_beyond_int64_stay_exact_integers() -> None:
    assert to_volumes(np.array([1e20, 3.0])) == [10**20, 3]


def test_closed_form_parameters_round_trip_through_json_exactly(model: Pipeline) -> None:
    """The workers get the closed form as JSON from the model watcher: the same floats."""
    predictor = quadratic_form(model)
    copy = QuadraticPredictor.from_parameters(json.loads(json.dumps(predictor.parameters())))
    rows = sample_rows(500)
    assert [copy.predict_one(row) for row in rows] == [predictor.predict_one(row) for row in rows]
    many = np.asarray(rows, dtype=np.float64)
    assert np.array_equal(copy.predict_many(many), predictor.predict_many(many))
