"""Configurations shipped inside the package (the embedded default of ``metamap demo``)."""

from importlib.resources import files
from pathlib import Path

__all__ = ["default_config_path"]


def default_config_path(name: str = "sinusoid_maml_demo") -> Path:
    """Path of a packaged YAML config."""
    return Path(str(files(__package__).joinpath(f"{name}.yaml")))
