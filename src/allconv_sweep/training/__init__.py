"""One run: train(cfg) and what it is made of (the run folder, callbacks, loggers, precision, resume)."""
