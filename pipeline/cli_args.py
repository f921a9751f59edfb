"""Value types of the command line's options (argparse ``type=`` callables): each checks
one option's value and says what was expected."""

from __future__ import annotations

import argparse
import math

__all__ = ["parse_combinations", "parse_concentration", "parse_fraction"]


def parse_combinations(text: str) -> int:
    # The count of combinations is only known from PlateSynthParams; importing it here (only
    # when the option is given) keeps `pipeline --help` free of numpy.
    from pipeline.synth.plate_params import PlateSynthParams

    n_drugs = len(PlateSynthParams().screening_drugs)
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= n_drugs:
        raise argparse.ArgumentTypeError(
            f"expected an integer from 1 to {n_drugs} (the first N of the {n_drugs} "
            f"screening combinations), got {text!r}"
        )
    return value


def _number(text: str) -> float:
    """``float(text)``, NaN when it is not a number (so one range check rejects both)."""
    try:
        return float(text)
    except ValueError:
        return math.nan


def parse_concentration(text: str) -> float:
    value = _number(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(
            f"expected a positive number (a concentration in uM, e.g. 0.1), got {text!r}"
        )
    return value


def parse_fraction(text: str) -> float:
    value = _number(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(
            f"expected a fraction in [0, 1] (0: no read-out wells), got {text!r}"
        )
    return value
