"""Date ranges of the dashboard, in a site's time zone, and the period before them.

A :class:`Period` is a run of whole local days (``start`` … ``end``, inclusive). Its
bounds in UTC are local midnights, so the overview reads whole days of the rollups
(:mod:`firsttag.analytics.rollups`) and never a part of one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

#: The ranges offered on the page: key → label. ``custom`` takes ``start`` and ``end``.
CHOICES: dict[str, str] = {
    "today": "Today",
    "7d": "Last 7 days",
    "30d": "Last 30 days",
    "month": "This month",
    "custom": "Custom",
}

#: The longest custom range, in days (a chart of more days is unreadable anyway).
MAX_DAYS = 731


@dataclass(frozen=True)
class Period:
    """Whole local days from ``start`` to ``end`` (inclusive) in time zone ``zone``."""

    start: date
    end: date
    zone: str

    @property
    def days(self) -> int:
        """How many days the period spans."""
        return (self.end - self.start).days + 1

    def dates(self) -> list[date]:
        """Every day of the period, in order."""
        return [self.start + timedelta(days=i) for i in range(self.days)]

    def previous(self) -> Period:
        """The period of the same length that ends the day before this one starts."""
        end = self.start - timedelta(days=1)
        return Period(end - timedelta(days=self.days - 1), end, self.zone)

    def midnight(self, day: date) -> datetime:
        """Local midnight at the start of ``day``, in UTC."""
        return datetime.combine(day, time(0), ZoneInfo(self.zone)).astimezone(UTC)

    def utc_bounds(self) -> tuple[datetime, datetime]:
        """[local midnight of ``start``, local midnight after ``end``) in UTC."""
        return self.midnight(self.start), self.midnight(self.end + timedelta(days=1))

    def day_starts(self) -> list[datetime]:
        """The UTC instant each local day of the period begins (for counting rows by day)."""
        return [self.midnight(d) for d in self.dates()]


def today_in(zone: str, now: datetime | None = None) -> date:
    """Today's date in ``zone``."""
    return (now or datetime.now(UTC)).astimezone(ZoneInfo(zone)).date()


def resolve(
    choice: str | None,
    zone: str,
    start: str | None = None,
    end: str | None = None,
    now: datetime | None = None,
) -> tuple[str, Period]:
    """The period a page's ``range`` (and ``start``/``end`` for custom) asks for.

    Returns the choice actually used and the period; raises ValueError naming the field
    when a custom date is not ``YYYY-MM-DD``, ends before it starts or spans too long.
    An unknown choice falls back to ``30d``.
    """
    today = today_in(zone, now)
    choice = choice if choice in CHOICES else "30d"
    if choice == "today":
        return choice, Period(today, today, zone)
    if choice == "7d":
        return choice, Period(today - timedelta(days=6), today, zone)
    if choice == "month":
        return choice, Period(today.replace(day=1), today, zone)
    if choice == "custom":
        first, last = _day("start", start), _day("end", end)
        if last < first:
            raise ValueError("end: must not be before start")
        if (last - first).days + 1 > MAX_DAYS:
            raise ValueError(f"end: a range may span at most {MAX_DAYS} days")
        return choice, Period(first, last, zone)
    return "30d", Period(today - timedelta(days=29), today, zone)


def _day(field: str, value: str | None) -> date:
    try:
        return date.fromisoformat(value or "")
    except ValueError:
        raise ValueError(f"{field}: a date as YYYY-MM-DD is required") from None
