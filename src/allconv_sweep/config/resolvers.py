"""What composing our configs needs in any process: the schema in Hydra's ConfigStore and the ${allconv.*:}
resolvers. Explicit (register(), idempotent), never an import's side effect: compose() calls it, and so do
the entry point (python -m allconv_sweep, whose jobs may run in other processes) and the search-path plugin
that Hydra loads in every app of this environment (evaluate, visualize)."""

from __future__ import annotations

from omegaconf import OmegaConf


def register() -> None:
    """The schema in Hydra's ConfigStore and ${allconv.dirname_excludes:}, the override keys a sweep's folder
    names leave out (conf/hydra/default.yaml), derived from the one list of keys that cannot change a result
    (allconv_sweep.config.identity.NEUTRAL_KEYS); and the other resolvers conf/ uses."""
    from allconv_sweep.config import files, schema

    schema.register()
    if not OmegaConf.has_resolver("allconv.dirname_excludes"):
        OmegaConf.register_new_resolver("allconv.dirname_excludes", lambda: list(files.dirname_exclude_keys()))
    if not OmegaConf.has_resolver("allconv.safe_dirname"):  # hydra.sweep.subdir: a job stays in its sweep folder
        OmegaConf.register_new_resolver("allconv.safe_dirname", lambda name: files.safe_dirname(str(name)))
    if not OmegaConf.has_resolver("allconv.groups_help"):
        OmegaConf.register_new_resolver("allconv.groups_help", files.groups_help)
    # launcher=slurm: gpus_per_job=0 is a CPU job of one task (not 0 devices, 0 tasks)
    if not OmegaConf.has_resolver("allconv.at_least_one"):
        OmegaConf.register_new_resolver("allconv.at_least_one", lambda n: max(1, int(n)))
    if not OmegaConf.has_resolver("allconv.accelerator_for"):
        OmegaConf.register_new_resolver("allconv.accelerator_for", lambda gpus: "gpu" if int(gpus) > 0 else "cpu")
    if not OmegaConf.has_resolver("allconv.user"):  # launcher=gpus: one lease folder per user
        import getpass
        OmegaConf.register_new_resolver("allconv.user", getpass.getuser)
    if not OmegaConf.has_resolver("allconv.abspath"):
        import os
        OmegaConf.register_new_resolver("allconv.abspath", lambda p: os.path.abspath(str(p)))
