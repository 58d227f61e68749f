"""`python -m priorstudio` is the same as the `priorstudio` command."""

import sys

from priorstudio.cli import entry

if __name__ == "__main__":
    sys.exit(entry())
