"""python -m allconv_sweep.report: the command; its code is allconv_sweep.results.report."""

import sys

from allconv_sweep.results.report import main

if __name__ == "__main__":
    sys.exit(main())
