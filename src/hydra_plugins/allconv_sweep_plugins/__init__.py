"""allconv_sweep's Hydra plugins (Hydra instantiates plugins only from the `hydra_plugins` namespace): the
sweeps/ search path, the sweeper of every multirun, the gpus and slurm launchers. Hydra imports every module
here at start-up: keep them light (no torch at import time)."""
