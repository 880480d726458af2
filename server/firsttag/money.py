"""Money: ISO 4217 codes and exact conversion to integer minor units.

Amounts are stored as integers in the currency's minor unit (cents for EUR, yen for JPY,
fils for KWD). Decimal amounts are converted with :class:`decimal.Decimal`, never
through binary floats, and rejected when they have more decimals than the currency.
"""

from __future__ import annotations

from decimal import Decimal

from iso4217 import Currency

MAX_MINOR_UNITS = 10**15
# Digits before the decimal point of any amount that can be in range.
MAX_AMOUNT_DIGITS = len(str(MAX_MINOR_UNITS))


def exponent(code: str) -> int:
    """The number of minor-unit digits of ISO 4217 ``code``; ValueError when not a currency."""
    try:
        value = Currency(code.upper()).exponent
    except ValueError:
        raise ValueError(f"{code!r} is not an ISO 4217 currency code") from None
    if value is None:  # XXX, XAU, …: codes without a minor unit are not money we count
        raise ValueError(f"{code!r} has no minor unit")
    return int(value)


def normalise_currency(code: str) -> str:
    """``code`` upper-cased after checking it is a currency (Dub's default is lower case)."""
    exponent(code)
    return code.upper()


def to_minor_units(amount: Decimal | int, code: str) -> int:
    """Convert a decimal ``amount`` of ``code`` exactly, e.g. 199.0 USD → 19900.

    ValueError for anything but a finite amount of at most MAX_MINOR_UNITS minor units
    with no more decimals than the currency has.
    """
    digits = exponent(code)
    try:
        amount = Decimal(amount)
        # Bounded before scaling: 9e999999 would overflow the decimal context, and
        # int() of 1e999999999 would build a billion-digit integer.
        if amount.is_finite() and amount.adjusted() > MAX_AMOUNT_DIGITS:
            raise ValueError("amount is out of range")
        scaled = amount.scaleb(digits)
    except ArithmeticError:  # decimal.InvalidOperation, Overflow, …
        raise ValueError("amount is not a number") from None
    if not scaled.is_finite():
        raise ValueError("amount must be a finite number")
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{code.upper()} amounts have at most {digits} decimal places")
    minor = int(scaled)
    if not 0 <= minor <= MAX_MINOR_UNITS:
        raise ValueError("amount is out of range")
    return minor
