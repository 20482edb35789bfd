"""``python -m helpers.data``: synth|check|download; the command line is :mod:`helpers.cli.data`."""
from helpers.cli.data import main

if __name__ == "__main__":
    raise SystemExit(main())
