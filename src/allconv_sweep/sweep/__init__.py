"""Sweeps: the plan of jobs (plan: skip, resume or run each; the follow-up seeds and final sweeps) and the GPU lease of launcher=gpus."""
