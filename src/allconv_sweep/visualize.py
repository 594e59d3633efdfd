"""python -m allconv_sweep.visualize: the command; its code is allconv_sweep.inspection.visualize."""

from allconv_sweep.inspection.visualize import main

if __name__ == "__main__":
    main()
