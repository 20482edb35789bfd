"""``python -m helpers.predict``: masks for a folder of images (notebook 05); the command line is :mod:`helpers.cli.predict`."""
from helpers.cli.predict import main

if __name__ == "__main__":
    raise SystemExit(main())
