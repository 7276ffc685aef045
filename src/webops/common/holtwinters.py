"""Holt-Winters analysis as graphite-web 1.1 computes it (render/functions.py's
holtWintersAnalysis), shared by the store's holtWinters* render functions and by webops check,
which computes the bands itself when the server it asks has none: one port, held equal to
graphite-web's own function by the tests of both."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

Value = float | None


def analysis(values: Sequence[Value], season: int) -> tuple[list[Value], list[Value]]:
    """graphite-web's holtWintersAnalysis, step for step (alpha = gamma = 0.1, beta = 0.0035;
    a None resets nothing but predicts nothing): the predictions and the deviations, one per
    point; `season` is the season's length in points."""
    alpha = gamma = 0.1
    beta = 0.0035
    intercepts: list[Value] = []
    slopes: list[float] = []
    seasonals: list[float] = []
    predictions: list[Value] = []
    deviations: list[Value] = []

    def last(of: list[Any], i: int) -> float:
        return float(of[i - season]) if i - season >= 0 else 0.0

    next_pred: Value = None
    for i, actual in enumerate(values):
        if actual is None:
            intercepts.append(None)
            slopes.append(0)
            seasonals.append(0)
            predictions.append(next_pred)
            deviations.append(0)
            next_pred = None
            continue
        if i == 0:
            last_intercept: float = actual
            last_slope = 0.0
            prediction: Value = actual
        else:
            li = intercepts[-1]
            last_intercept = actual if li is None else li
            last_slope = slopes[-1]
            prediction = next_pred
        last_seasonal = last(seasonals, i)
        next_last_seasonal = last(seasonals, i + 1)
        last_seasonal_dev = last(deviations, i)
        intercept = alpha * (actual - last_seasonal) + (1 - alpha) * (last_intercept + last_slope)
        slope = beta * (intercept - last_intercept) + (1 - beta) * last_slope
        seasonal = gamma * (actual - intercept) + (1 - gamma) * last_seasonal
        next_pred = intercept + slope + next_last_seasonal
        deviation = gamma * math.fabs(actual - (prediction or 0)) + (1 - gamma) * last_seasonal_dev
        intercepts.append(intercept)
        slopes.append(slope)
        seasonals.append(seasonal)
        predictions.append(prediction)
        deviations.append(deviation)
    return predictions, deviations
