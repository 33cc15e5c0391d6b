"""Typed run configuration, loaded from YAML (``safe_load``) with command-line overrides.

:mod:`.schema` holds the sections and their checks, :mod:`.loading` reads files and
``section.key=value`` overrides into a :class:`RunConfig`, and :mod:`.messages` words what is
wrong: every mistake is one line naming the key and how to fix it, raised before work starts.
"""

from metamap.train.config.loading import (
    MAX_CONFIG_BYTES,
    MAX_CONFIG_VALUES,
    apply_overrides,
    load_config,
    parse_config,
)
from metamap.train.config.schema import (
    MAX_SEED,
    SCHEDULE_FIELDS,
    AugmentConfig,
    DataConfig,
    EvalConfig,
    LearnerConfig,
    ModelConfig,
    RunConfig,
    TaskConfig,
    TrainConfig,
)

__all__ = [
    "MAX_CONFIG_BYTES",
    "MAX_CONFIG_VALUES",
    "MAX_SEED",
    "SCHEDULE_FIELDS",
    "AugmentConfig",
    "DataConfig",
    "EvalConfig",
    "LearnerConfig",
    "ModelConfig",
    "RunConfig",
    "TaskConfig",
    "TrainConfig",
    "apply_overrides",
    "load_config",
    "parse_config",
]
