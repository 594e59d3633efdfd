"""python -m allconv_sweep.dashboard: the command; its code is allconv_sweep.results.dashboard."""

import sys

from allconv_sweep.results.dashboard import main

if __name__ == "__main__":
    sys.exit(main())
