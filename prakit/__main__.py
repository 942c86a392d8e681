import sys

from prakit.cli import main

if __name__ == "__main__":  # worker processes (forkserver, spawn) import this module again
    sys.exit(main())
