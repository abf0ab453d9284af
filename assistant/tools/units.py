"""Unit conversion with Pint, from the way units are spoken ("degrees Fahrenheit", "miles per
hour", "square feet", "fluid ounces") to the way Pint spells them.

Pint's unit tables take about a second to load: they are loaded once, on first use (in the
worker thread the tool runs in), or ahead of time with ``warm_up``.
"""

from __future__ import annotations

import re
import threading
from typing import Any

_registry: Any = None
_lock = threading.Lock()

#: Spoken names Pint does not know, or knows as something else ("degrees" alone is an angle).
_ALIASES = {
    "celsius": "degree_Celsius",
    "centigrade": "degree_Celsius",
    "fahrenheit": "degree_Fahrenheit",
    "kelvin": "kelvin",
    "degrees celsius": "degree_Celsius",
    "degrees centigrade": "degree_Celsius",
    "degrees fahrenheit": "degree_Fahrenheit",
    "degrees kelvin": "kelvin",
    "degree celsius": "degree_Celsius",
    "degree fahrenheit": "degree_Fahrenheit",
    "c": "degree_Celsius",
    "f": "degree_Fahrenheit",
    "°c": "degree_Celsius",
    "°f": "degree_Fahrenheit",
    "kph": "kilometer / hour",
    "km/h": "kilometer / hour",
    "kmh": "kilometer / hour",
    "mph": "mile / hour",
    "fluid ounce": "fluid_ounce",
    "fluid ounces": "fluid_ounce",
    "fl oz": "fluid_ounce",
    "nautical mile": "nautical_mile",
    "nautical miles": "nautical_mile",
    "metric ton": "metric_ton",
    "metric tons": "metric_ton",
    "tonne": "metric_ton",
    "tonnes": "metric_ton",
    "light year": "light_year",
    "light years": "light_year",
}

_POWER = re.compile(r"\b(square|cubic)\s+([a-z_]+)")


def _pint() -> Any:
    global _registry
    with _lock:
        if _registry is None:
            import pint

            _registry = pint.UnitRegistry(cache_folder=None)
        return _registry


def warm_up() -> None:
    """Load the unit tables now (call from a worker thread)."""
    _pint()


def spoken_unit(name: str) -> str:
    """A unit as said aloud → Pint's expression for it."""
    text = " ".join(name.strip().lower().replace("-", " ").split())
    if text in _ALIASES:
        return _ALIASES[text]
    text = text.replace(" per ", " / ")
    text = _POWER.sub(lambda m: f"{m.group(2)} ** {2 if m.group(1) == 'square' else 3}", text)
    parts = [_ALIASES.get(p.strip(), p.strip()) for p in text.split("/")]
    return " / ".join(parts)


def convert_units(value: float, from_unit: str, to_unit: str) -> str:
    """``value`` in ``from_unit`` expressed in ``to_unit``, rounded for speaking."""
    import pint

    ureg = _pint()
    try:
        quantity = ureg.Quantity(float(value), spoken_unit(from_unit))
        result = quantity.to(spoken_unit(to_unit))
    except pint.errors.UndefinedUnitError as exc:
        raise ValueError(f"unknown unit {exc.unit_names!r}") from None
    except pint.errors.DimensionalityError:
        raise ValueError(f"cannot convert {from_unit} to {to_unit}") from None
    magnitude = float(result.magnitude)
    shown = f"{magnitude:,.0f}" if abs(magnitude) >= 1000 else f"{magnitude:.4g}"
    return f"{value:g} {from_unit} = {shown} {to_unit}"
