"""Parse human-readable quantities such as ``"76.8 GB/s"``, ``"2.4 GHz"`` or ``"32 KiB"``.

Values are returned in base units (``Hz``, ``B``, ``B/s``, ``FLOP/s``, ``OP/s``). SI prefixes
are decimal (``k`` = 1e3, ``G`` = 1e9); binary prefixes carry an ``i`` (``KiB`` = 1024 B).
``K`` is accepted as a synonym for ``k``. Digit-group commas (``"1,979 TOPS"``) are allowed.
"""

from __future__ import annotations

import re

__all__ = ["BASE_UNITS", "parse_quantity"]

_SI = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}
_BINARY = {"Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40}

#: unit spellings accepted after the prefix → base unit
BASE_UNITS: dict[str, str] = {
    "Hz": "Hz",
    "B": "B",
    "B/s": "B/s",
    "FLOP/s": "FLOP/s",
    "FLOPS": "FLOP/s",
    "OP/s": "OP/s",
    "OPS": "OP/s",
    "": "",
}

_PATTERN = re.compile(
    r"^\s*(?P<num>[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*"
    r"(?P<prefix>Ki|Mi|Gi|Ti|[kKMGTP])?(?P<unit>B/s|B|Hz|FLOP/s|FLOPS|OP/s|OPS)?\s*$"
)


def parse_quantity(text: str | float | int, expect: str | None = None) -> tuple[float, str]:
    """Parse ``text`` into ``(value in base units, base unit)``.

    Parameters
    ----------
    text : str or number
        e.g. ``"76.8 GB/s"``, ``"2.4 GHz"``, ``"1 MiB"``, ``"62 GFLOP/s"``, ``"1,979 TOPS"``;
        a bare number is returned as is with unit ``""``.
    expect : str, optional
        Base unit the caller needs (``"B/s"``, ``"Hz"``...); a different unit raises.

    Raises
    ------
    ValueError
        The text is not ``<number> [prefix]<unit>`` or its unit is not ``expect``.
    """
    if isinstance(text, bool):
        raise ValueError(f"expected a quantity, got {text!r}")
    if isinstance(text, (int, float)):
        value, unit = float(text), ""
    else:
        match = _PATTERN.match(str(text))
        if match is None:
            raise ValueError(
                f"cannot parse quantity {text!r}: expected '<number> [prefix]<unit>' with "
                f"unit one of {sorted(u for u in BASE_UNITS if u)} and prefix one of "
                f"{sorted(set(_SI) - {''})} or {sorted(_BINARY)}, e.g. '76.8 GB/s'")
        prefix = match["prefix"] or ""
        unit = BASE_UNITS[match["unit"] or ""]
        if prefix and not unit:
            raise ValueError(f"quantity {text!r} has a prefix but no unit")
        if prefix in _BINARY and unit != "B":
            raise ValueError(f"binary prefix {prefix!r} is only valid for bytes, got {text!r}")
        scale = _BINARY.get(prefix) or _SI[prefix]
        value = float(match["num"].replace(",", "")) * scale
    if expect is not None and unit != expect:
        raise ValueError(f"quantity {text!r} is in {unit or 'no unit'!r}, expected {expect!r}")
    return value, unit
