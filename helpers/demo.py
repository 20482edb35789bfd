"""``python -m helpers.demo``: the Gradio demo app of notebook 07; the command line is :mod:`helpers.cli.demo`."""
from helpers.cli.demo import main

if __name__ == "__main__":
    raise SystemExit(main())
