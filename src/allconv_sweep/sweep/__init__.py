"""The sweep package: how a sweep file (sweeps/*.yaml, added with +sweep=<name>; its settings are the sweep.*
keys) becomes jobs. Hydra's side of it, the sweeper and the launchers, is in hydra_plugins/allconv_sweep_plugins/.
Here: the plan of jobs (plan: skip, resume or run each; the follow-up seeds and final sweeps) and the GPU lease of launcher=gpus."""
