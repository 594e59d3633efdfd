"""python -m allconv_sweep.evaluate: the command; its code is allconv_sweep.inspection.evaluate."""

import sys

from allconv_sweep.config.checks import exit_on_unreadable_path
from allconv_sweep.inspection.evaluate import main

if __name__ == "__main__":
    exit_on_unreadable_path(sys.argv[1:])
    main()
