"""The run's config: where conf/ lives (files), what a run is (identity), the schema, composing and validating
(compose), Hydra's runtime facts (runtime), the CLI's pre-check (checks), configs read back from records."""

from allconv_sweep.config.compose import build, compose, register, to_container, user_error, validate
from allconv_sweep.config.files import config_dir, sweeps_dir

__all__ = ["build", "compose", "config_dir", "register", "sweeps_dir", "to_container", "user_error", "validate"]
