"""python -m allconv_sweep.report: the command; its code is allconv_sweep.results.report."""

from allconv_sweep.results.report import main

if __name__ == "__main__":
    raise SystemExit(main())
