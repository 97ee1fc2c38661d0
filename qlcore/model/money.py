"""Exact money. Floats from research code are converted once, at the boundary, through their shortest repr."""
from decimal import Decimal

ZERO = Decimal(0)
ONE = Decimal(1)
BPS = Decimal(10_000)


def to_decimal(value: object) -> Decimal:
    """Convert a price, quantity or amount to `Decimal` without binary noise (0.1 -> Decimal('0.1'))."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"not a finite number: {value!r}")
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"not a finite number: {value!r}")
        return Decimal(float.__repr__(value))  # numpy's float64 subclass has a repr of its own
    if isinstance(value, str):
        try:
            d = Decimal(value.strip())
        except Exception:
            raise ValueError(f"not a number: {value!r}") from None
        if not d.is_finite():
            raise ValueError(f"not a finite number: {value!r}")
        return d
    # numpy scalars and the like
    try:
        return to_decimal(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"cannot convert {type(value).__name__} {value!r} to a Decimal") from None


def canonical(d: Decimal) -> str:
    """A string that is the same for equal values (10.0 and 10.00 both give '10')."""
    if not d:
        return "0"
    return format(d.normalize(), "f")
