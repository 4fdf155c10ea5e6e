"""`python -m targets NAME`: the target CLI (targets/server.py)."""

import sys

from targets.server import main

sys.exit(main())
