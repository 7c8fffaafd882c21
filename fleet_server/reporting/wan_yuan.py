"""Amounts in 万元 (10,000 yuan) with two decimals, as the weekly report shows them.

Every amount is held in fen. The report shows 万元 with two decimals, so one
displayed unit is 0.01 万元 = 100 yuan = 10,000 fen.

Rounding rule, the same everywhere in the report:

1. A total is rounded half up: ``fen / 10,000`` to the nearest whole unit,
   halves away from zero.
2. The rows under a total are apportioned by the largest remainder method:
   each row gets its amount rounded down (toward minus infinity, so a
   negative adjustment works the same way), and the units still missing to
   reach the rounded total go one each to the rows with the largest dropped
   remainders (ties to the earlier row). So the displayed rows always add up
   to the displayed total, and no row is more than 0.01 万元 from its exact
   value.
"""

from decimal import Decimal

FEN_PER_UNIT = 10_000  # 0.01 万元
CENT_OF_WAN = Decimal("0.01")


def round_half_up_units(fen: int) -> int:
    """Return ``fen`` in units of 0.01 万元, rounded half away from zero."""
    sign = -1 if fen < 0 else 1
    quotient, remainder = divmod(abs(fen), FEN_PER_UNIT)
    return sign * (quotient + (1 if 2 * remainder >= FEN_PER_UNIT else 0))


def units_to_wan(units: int) -> Decimal:
    return Decimal(units) * CENT_OF_WAN


def wan_yuan(fen: int) -> Decimal:
    """Return one amount in 万元 with two decimals (rule 1)."""
    return units_to_wan(round_half_up_units(fen))


def apportion(rows_fen: list[int]) -> tuple[list[Decimal], Decimal]:
    """Return the rows and their total in 万元 so that the rows add up to the total.

    Rows may be negative (a refund or a voided entry carried as an adjustment).
    The rounded total is never below the sum of the floors nor more than one
    unit per row above it, so the missing units always fit.
    """
    total_units = round_half_up_units(sum(rows_fen))
    floors = [fen // FEN_PER_UNIT for fen in rows_fen]
    missing = total_units - sum(floors)
    by_remainder = sorted(range(len(rows_fen)), key=lambda i: (-(rows_fen[i] % FEN_PER_UNIT), i))
    for index in by_remainder[:missing]:
        floors[index] += 1
    return [units_to_wan(units) for units in floors], units_to_wan(total_units)


def format_wan(value: Decimal) -> str:
    return f"{value:.2f}"
