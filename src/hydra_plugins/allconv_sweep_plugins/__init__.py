"""allconv_sweep's Hydra plugins (Hydra only instantiates plugins from the `hydra_plugins` namespace).

- searchpath: serves the repo's sweeps/ folder as the config group `sweep` (`+sweep=lr_grid`).
- sweeper: PaperSweeper, the multirun driver of every sweep file (skip/resume, dry run, seeds, checks).
- gpu_launcher: GpuPoolLauncher, joblib with a file-lock lease: one job per GPU (launcher=gpus).

Hydra imports every module here at start-up: keep them light (no torch at import time).
"""
