"""Percentiles from stored (encoded) HdrHistograms: any percentile, and the whole spectrum.

The run stores each request name's latency as an encoded HdrHistogram (µs), so a report asks for
whatever percentiles it likes long after the run. Percentiles come from the hdrhistogram
package; nothing here computes one by hand.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
from hdrh.histogram import HdrHistogram

from reports.errors import BadFileError

# The spectrum runs out to 1/(1-q) = 10**MAX_NINES (99.9999 %), or as far as the samples go.
MAX_NINES = 6
STEPS_PER_DECADE = 20
SPECTRUM_COLUMNS = ("percentile", "inverse_tail", "value_us")


def decode(encoded: str) -> HdrHistogram:
    try:
        return HdrHistogram.decode(encoded)
    except Exception as exc:  # the package raises bare zlib/struct/ValueErrors
        raise BadFileError(f"an encoded histogram does not decode: {exc}") from None


def column_name(percentile: float) -> str:
    """50 -> 'p50_us', 99.9 -> 'p999_us', 100 -> 'max_us', 0 -> 'min_us'."""
    if percentile == 100:
        return "max_us"
    if percentile == 0:
        return "min_us"
    return "p" + format(percentile, "g").replace(".", "") + "_us"


def percentiles(encoded: str, wanted: Iterable[float]) -> dict[str, int | None]:
    """{column_name(p): value in µs} of one histogram; None for every column when it is empty."""
    wanted = list(wanted)
    histogram = decode(encoded)
    if not histogram.get_total_count():
        return {column_name(p): None for p in wanted}
    values = histogram.get_percentile_to_value_dict(wanted)
    return {column_name(p): int(values[p]) for p in wanted}


def total_count(encoded: str) -> int:
    return int(decode(encoded).get_total_count())


def spectrum(encoded: str) -> pd.DataFrame:
    """The percentile spectrum: percentile, 1/(1-q) and µs value, from the median outwards.

    Points are evenly spaced in log(1/(1-q)) up to the last nine the sample count supports
    (10,000 samples reach 99.99 %), which is how HdrHistogram plots are read.
    """
    histogram = decode(encoded)
    count = histogram.get_total_count()
    if not count:
        return pd.DataFrame(columns=list(SPECTRUM_COLUMNS))
    first, last = np.log10(2.0), min(MAX_NINES, np.log10(count))
    steps = max(1, int((last - first) * STEPS_PER_DECADE) + 1)
    exponents = np.linspace(first, max(first, last), steps)
    qs = sorted({50.0} | {round(100.0 * (1.0 - 10.0**-e), 6) for e in exponents})
    values = histogram.get_percentile_to_value_dict(qs)
    return pd.DataFrame(
        {
            "percentile": qs,
            "inverse_tail": [1.0 / (1.0 - q / 100.0) for q in qs],
            "value_us": [int(values[q]) for q in qs],
        }
    )
