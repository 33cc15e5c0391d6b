"""Interpretability plots (PNG)."""

from metamap.viz.plots import adaptation_plot, learning_curve_plot
from metamap.viz.recsys import support_curve_plot, user_adaptation_plot
from metamap.viz.rl import navigation_plot, return_curve_plot

__all__ = [
    "adaptation_plot",
    "learning_curve_plot",
    "navigation_plot",
    "return_curve_plot",
    "support_curve_plot",
    "user_adaptation_plot",
]
