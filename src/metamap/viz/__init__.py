"""Interpretability plots (PNG)."""

from metamap.viz.plots import adaptation_plot, learning_curve_plot

__all__ = ["adaptation_plot", "learning_curve_plot"]
