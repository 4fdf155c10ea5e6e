import sys

from targets.server import main

sys.exit(main())
