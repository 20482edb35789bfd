"""``python -m helpers.course``: run every notebook headless; the command line is :mod:`helpers.cli.course`."""
from helpers.cli.course import main

if __name__ == "__main__":
    raise SystemExit(main())
