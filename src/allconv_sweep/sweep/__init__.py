"""How a sweep file (sweeps/*.yaml, +sweep=<name>, its sweep.* keys) becomes jobs: the plan (skip, resume or run
each), the follow-up seeds and final sweeps, and the GPU lease of launcher=gpus. Hydra's side (the sweeper,
the launchers): hydra_plugins/allconv_sweep_plugins/."""
