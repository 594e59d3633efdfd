"""python -m allconv_sweep.stability: the command; its code is allconv_sweep.results.stability."""

from allconv_sweep.results.stability import main

if __name__ == "__main__":
    raise SystemExit(main())
