"""`wsbench`: the command-line front door (DESIGN.md, "Command-line contract").

The run/sweep/report commands are not built yet; until they are, this says so plainly and points
to what works today instead of pretending.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

NOT_YET = (
    "wsbench: the run/sweep/ui/report commands are not built yet. Start a reference target "
    "with `python -m targets {aiohttp,websockets,raw}` and drive it with "
    "`locust -f scenarios/<name>.py`."
)


def main(argv: Sequence[str] | None = None) -> int:
    print(NOT_YET, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
