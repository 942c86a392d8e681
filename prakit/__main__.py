import sys

from prakit.cli import main

sys.exit(main())
