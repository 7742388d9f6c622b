"""Checks of the numeric options callers give: timeouts, leases, retry budgets, batch sizes.

Each is checked where it is given, so that a bad value fails at once, naming the option,
rather than as an endless or no wait later on.
"""

from __future__ import annotations

import math

from .errors import ConfigurationError


def checked_number(
    parameter: str,
    value: object,
    *,
    minimum: float = 0,
    positive: bool = False,
    whole: bool = False,
    unit: str = "seconds",
) -> float:
    """Return a numeric option (a timeout, lease, retry budget, batch size) if it is usable.

    Checked where the option is given, so that a bad value fails at once, naming the
    option, rather than as an endless or no wait later on.

    :param parameter: the option's name, as the caller spells it
    :param minimum: the least value allowed
    :param positive: refuse ``minimum`` itself too (``minimum=0``: more than 0)
    :param whole: require an ``int``
    :param unit: what the number counts, for the message (empty: nothing)
    :raises ConfigurationError: the value is not a finite number (``bool`` is not one)
        within the bound; a value that is not a number is shown by its type only
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        usable = (isinstance(value, int) or (not whole and math.isfinite(value))) and (
            value > minimum if positive else value >= minimum
        )
        if usable:
            return value
        shown = repr(value)
    else:
        shown = "None" if value is None else f"a {type(value).__name__}"
    kind = ("a whole number" if whole else "a number") + (f" of {unit}" if unit else "")
    bound = f"greater than {minimum:g}" if positive else f"at least {minimum:g}"
    raise ConfigurationError(f"{parameter} must be {kind}, {bound} (not {shown})")
