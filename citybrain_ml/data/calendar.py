"""Service calendars: when a series can be observed at all (a metro's operating hours).

A metro, a bus line or a staffed counter produces no data while it is closed. The grid stays
regular (closed slots are NaN rows, so "the same slot one day back" is always ``steps_per_day``
rows back), but a closed slot is never a forecast origin, a calibration point, a scored target
or a published forecast row, and horizons count *service* steps: a 4-step forecast from the
last slot before closing continues at the first slots after opening the next day.

The calendar is one set of open time-of-day slots shared by all series (a daily timetable).
It is detected from the data -- slots in which no series has a non-zero observation on any of
at least ``min_days`` days -- or given as operating hours (``"05:30-23:00"``). Weekly
timetables (closed on Sundays) and per-series hours are not modelled: such days are ordinary
gaps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from citybrain_ml.data.schema import TIMESTAMP, VALUE

DAY = pd.Timedelta("1D")
_HOURS = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


class CalendarError(ValueError):
    """An operating-hours specification that cannot be read or does not fit the frequency."""


@dataclass(frozen=True)
class ServiceCalendar:
    """Open time-of-day slots of a daily timetable on a ``freq`` grid.

    Parameters
    ----------
    freq : str
        Grid frequency (a fixed step that divides one day, e.g. ``"15min"``, ``"h"``).
    open_slots : tuple of int
        Slot numbers ``0..steps_per_day - 1`` (slot 0 starts at midnight) that are in service.
    source : str
        ``"detected"``, ``"given"`` or ``"always"`` -- reported with every run.
    """

    freq: str
    open_slots: tuple[int, ...]
    source: str = "given"

    # ------------------------------------------------------------------ construction
    @classmethod
    def always(cls, freq: str) -> ServiceCalendar:
        """A calendar with every slot open (the default for sensors that never close)."""
        n = steps_per_day(freq) or 1
        return cls(freq, tuple(range(n)), "always")

    @classmethod
    def from_hours(cls, hours: str, freq: str) -> ServiceCalendar:
        """Parse operating hours ``"HH:MM-HH:MM"`` (several separated by commas).

        The end time is the last open slot's start, inclusive (``"05:30-23:00"`` at 15 min is
        open 05:30, 05:45, ..., 23:00). A range may wrap past midnight (``"18:00-02:00"``).
        ``"always"`` opens every slot.
        """
        n = steps_per_day(freq)
        if n is None:
            raise CalendarError(
                f"operating hours need a sub-daily frequency that divides one day; got {freq!r}"
            )
        if str(hours).strip().lower() in ("always", "all", "24h"):
            return cls.always(freq)
        step_min = DAY.total_seconds() / 60 / n
        slots: set[int] = set()
        for part in str(hours).split(","):
            m = _HOURS.match(part)
            if not m:
                raise CalendarError(
                    f"cannot read operating hours {part.strip()!r}; expected 'HH:MM-HH:MM' "
                    "(e.g. '05:30-23:00'), several separated by commas, or 'always'"
                )
            h0, m0, h1, m1 = (int(x) for x in m.groups())
            start, end = (h0 * 60 + m0) / step_min, (h1 * 60 + m1) / step_min
            if not (float(start).is_integer() and float(end).is_integer()) or max(h0, h1) > 24:
                raise CalendarError(f"operating hours {part.strip()!r} are not on the {freq} grid")
            start, end = int(start) % n, int(end) % n
            length = (end - start) % n + 1
            slots.update((start + i) % n for i in range(length))
        return cls(freq, tuple(sorted(slots)), "given")

    # ------------------------------------------------------------------ queries
    @property
    def steps_per_day(self) -> int:
        return steps_per_day(self.freq) or 1

    @property
    def has_closed(self) -> bool:
        """True when at least one slot of the day is closed."""
        return len(self.open_slots) < self.steps_per_day

    def slot_of(self, timestamps) -> np.ndarray:
        """Slot number of each timestamp within its day."""
        ts = pd.DatetimeIndex(timestamps)
        since_midnight = ts - ts.normalize()
        step = pd.Timedelta(pd.tseries.frequencies.to_offset(self.freq))
        return np.asarray(since_midnight // step, dtype=np.int64) % self.steps_per_day

    def is_open(self, timestamps) -> np.ndarray:
        """Boolean mask: True where a timestamp falls in service."""
        if not self.has_closed:
            return np.ones(len(pd.DatetimeIndex(timestamps)), dtype=bool)
        table = np.zeros(self.steps_per_day, dtype=bool)
        table[list(self.open_slots)] = True
        return table[self.slot_of(timestamps)]

    def offsets(self, origins, horizon: int) -> np.ndarray:
        """Grid steps from each origin to its 1st..``horizon``-th open slot, ``(n, horizon)``.

        Without closed slots this is ``1..horizon`` for every origin.
        """
        n = len(pd.DatetimeIndex(origins))
        steps = np.arange(1, int(horizon) + 1)
        if not self.has_closed:
            return np.broadcast_to(steps, (n, len(steps))).copy()
        return self._offset_table(int(horizon))[self.slot_of(origins)]

    def target_times(self, origins, horizon: int) -> np.ndarray:
        """Timestamps of the 1st..``horizon``-th service steps after each origin, ``(n, h)``."""
        origins = pd.DatetimeIndex(origins)
        step = pd.Timedelta(pd.tseries.frequencies.to_offset(self.freq))
        off = self.offsets(origins, horizon)
        return origins.to_numpy()[:, None] + off * step

    def max_offset(self, horizon: int) -> int:
        """The longest calendar span ``horizon`` service steps can take from any origin."""
        if not self.has_closed:
            return int(horizon)
        return int(self._offset_table(int(horizon)).max())

    def _offset_table(self, horizon: int) -> np.ndarray:
        n = self.steps_per_day
        is_open = np.zeros(n, dtype=bool)
        is_open[list(self.open_slots)] = True
        days = int(np.ceil(horizon / max(len(self.open_slots), 1))) + 2
        ahead = np.arange(1, days * n + 1)
        table = np.empty((n, horizon), dtype=np.int64)
        for slot in range(n):
            hits = ahead[is_open[(slot + ahead) % n]]
            table[slot] = hits[:horizon]
        return table

    # ------------------------------------------------------------------ reporting
    def describe(self) -> str:
        """One line such as ``open 05:30-23:00 (71 of 96 slots a day; detected)``."""
        if not self.has_closed:
            return f"open all day ({self.source})"
        return (
            f"open {self.hours()} ({len(self.open_slots)} of {self.steps_per_day} slots a day; "
            f"{self.source})"
        )

    def hours(self) -> str:
        """Open slots as ``HH:MM-HH:MM`` ranges (start of first to start of last open slot)."""
        step_min = DAY.total_seconds() / 60 / self.steps_per_day
        runs = _runs(sorted(self.open_slots), self.steps_per_day)
        return ",".join(f"{_clock(a * step_min)}-{_clock(b * step_min)}" for a, b in runs)

    def to_dict(self) -> dict:
        return {"freq": self.freq, "hours": self.hours(), "source": self.source}


# ---------------------------------------------------------------------- detection
def detect_calendar(
    df: pd.DataFrame, freq: str, min_days: int = 2, zero_is_closed: bool = True
) -> ServiceCalendar:
    """Find the daily slots in which no series is ever observed.

    Parameters
    ----------
    df : DataFrame
        Long frame ``series_id, timestamp, value`` on a regular grid.
    freq : str
        The grid's frequency. Calendars exist only for sub-daily steps that divide a day.
    min_days : int
        A slot is called closed only when the data span covers it on at least this many
        days, so a short or partial first day does not look like a closure.
    zero_is_closed : bool
        Treat a slot whose every observation is exactly 0 as closed too (stations that export
        zero passengers at night). Speeds and concentrations never have such slots.

    Returns
    -------
    ServiceCalendar
        ``source="detected"`` with the open slots, or an all-open calendar (``"always"``).
    """
    n = steps_per_day(freq)
    if n is None or n < 2 or df.empty:
        return ServiceCalendar.always(freq)
    cal = ServiceCalendar.always(freq)
    values = df[VALUE].to_numpy(dtype=float)
    seen = ~np.isnan(values)
    if zero_is_closed:
        seen &= values != 0
    observed = np.unique(cal.slot_of(df.loc[seen, TIMESTAMP]))
    times = pd.DatetimeIndex(df[TIMESTAMP])
    grid = pd.date_range(times.min(), times.max(), freq=freq)
    coverage = np.bincount(cal.slot_of(grid), minlength=n)
    closed = np.setdiff1d(np.flatnonzero(coverage >= min_days), observed)
    if len(closed) == 0 or len(observed) == 0:
        return cal
    open_slots = tuple(int(s) for s in np.setdiff1d(np.arange(n), closed))
    return ServiceCalendar(freq, open_slots, "detected")


def resolve_calendar(spec, df: pd.DataFrame, freq: str) -> ServiceCalendar:
    """A calendar from a config value: ``None``/``"auto"`` detects, else operating hours."""
    if isinstance(spec, ServiceCalendar):
        return spec
    if spec is None or str(spec).strip().lower() == "auto":
        return detect_calendar(df, freq)
    return ServiceCalendar.from_hours(str(spec), freq)


def in_service(df: pd.DataFrame, calendar: ServiceCalendar | None) -> np.ndarray:
    """Mask of the rows of a long frame that fall in service (all True without a calendar)."""
    if calendar is None or not calendar.has_closed:
        return np.ones(len(df), dtype=bool)
    return calendar.is_open(df[TIMESTAMP])


def steps_per_day(freq: str) -> int | None:
    """Grid steps in one day, or None when the step is not a fixed divisor of a day."""
    try:
        step = pd.Timedelta(pd.tseries.frequencies.to_offset(freq))
    except ValueError:
        return None
    if step <= pd.Timedelta(0) or step > DAY or DAY % step != pd.Timedelta(0):
        return None
    return int(DAY / step)


def _runs(slots: list[int], n: int) -> list[tuple[int, int]]:
    """Contiguous runs of slot numbers, joining a run that wraps past midnight."""
    runs: list[list[int]] = []
    for s in slots:
        if runs and s == runs[-1][1] + 1:
            runs[-1][1] = s
        else:
            runs.append([s, s])
    if len(runs) > 1 and runs[0][0] == 0 and runs[-1][1] == n - 1:
        runs[0][0] = runs.pop()[0]
    return [(a, b) for a, b in runs]


def _clock(minutes: float) -> str:
    m = int(round(minutes))
    return f"{m // 60:02d}:{m % 60:02d}"
