"""What can be wrong with the input of a report: one line each, for the CLI to print (exit 2).

BadInput (common.errors)
├── ReportError             bad input for a report or a comparison (a threshold, an output path)
└── ResultsError            (common.schema) a stored file that cannot be used as it is
    ├── NotARunError        the folder does not exist or holds no meta.json
    ├── SchemaVersionError  meta.json or point.json has a schema version this code does not read
    └── BadFileError        a stored file that must be read is not valid JSON or not the format

The three stored-file kinds are the schema's (the one reader raises them); they are named here
too so that report code imports its errors from one place.
"""

from __future__ import annotations

from common.errors import BadInput
from common.schema import BadFileError, NotARunError, ResultsError, SchemaVersionError

__all__ = ["BadFileError", "NotARunError", "ReportError", "ResultsError", "SchemaVersionError"]


class ReportError(BadInput):
    """Bad input for `wsbench report` / `wsbench compare`; the message is one line."""
