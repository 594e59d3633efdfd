"""python -m allconv_sweep.dashboard: the command; its code is allconv_sweep.results.dashboard."""

from allconv_sweep.results.dashboard import main

if __name__ == "__main__":
    raise SystemExit(main())
