"""``python -m helpers.train``: train a model (notebook 04); the command line is :mod:`helpers.cli.train`."""
from helpers.cli.train import main

if __name__ == "__main__":
    raise SystemExit(main())
