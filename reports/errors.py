"""What can be wrong with the input of a report: one line each, for the CLI to print (exit 2).

ReportError             base; str() is the whole message, one line
├── NotARunError        the folder does not exist or holds no meta.json
├── SchemaVersionError  meta.json or point.json has a schema version this code does not read
└── BadFileError        a stored file that must be read is not valid JSON or not the format
"""

from __future__ import annotations


class ReportError(Exception):
    """Bad input for `wsbench report` / `wsbench compare`; the message is one line."""


class NotARunError(ReportError):
    """The path is not a wsbench run folder."""


class SchemaVersionError(ReportError):
    """A stored file's schema version is one this code does not read."""


class BadFileError(ReportError):
    """A stored file is unreadable or not in the format it should be."""
