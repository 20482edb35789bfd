"""``python -m helpers.evaluate``: score predicted masks against the ground truth (notebook 05); the command line is :mod:`helpers.cli.evaluate`."""
from helpers.cli.evaluate import main

if __name__ == "__main__":
    raise SystemExit(main())
