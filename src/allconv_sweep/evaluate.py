"""python -m allconv_sweep.evaluate: the command; its code is allconv_sweep.inspection.evaluate."""

from allconv_sweep.inspection.evaluate import main

if __name__ == "__main__":
    main()
