"""HJ 633-2012 AQI: worked examples computed by hand from Table 1."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from citybrain_ml.features.aqi import (
    BREAKPOINTS,
    IAQI_LEVELS,
    aqi,
    aqi_category,
    daily_aqi,
    iaqi,
    iaqi_table,
)


def test_iaqi_worked_examples():
    # PM2.5 24h = 100: segment 75..115 -> 100..150: 100 + 50 * (100 - 75) / 40 = 131.25
    assert iaqi("PM2.5", 100) == pytest.approx(131.25)
    # PM10 24h = 200: segment 150..250 -> 100..150: 100 + 50 * 50 / 100 = 125
    assert iaqi("pm10", 200) == pytest.approx(125.0)
    # CO 24h = 3 mg/m3: segment 2..4 -> 50..100: 50 + 50 * 1 / 2 = 75
    assert iaqi("CO", 3) == pytest.approx(75.0)
    # NO2 1h = 950: segment 700..1200 -> 150..200: 150 + 50 * 250 / 500 = 175
    assert iaqi("NO2", 950, "1h") == pytest.approx(175.0)
    # O3 8h = 500: segment 265..800 -> 200..300: 200 + 100 * 235 / 535 = 243.925...
    assert iaqi("O3", 500, "8h") == pytest.approx(200 + 100 * 235 / 535)
    # SO2 24h = 1000: segment 800..1600 -> 200..300: 200 + 100 * 200 / 800 = 225
    assert iaqi("SO2", 1000) == pytest.approx(225.0)


@pytest.mark.parametrize("key", sorted(BREAKPOINTS))
def test_every_breakpoint_maps_to_its_level(key):
    pollutant, averaging = key
    bps = BREAKPOINTS[key]
    got = iaqi(pollutant, np.array(bps, dtype=float), averaging)
    np.testing.assert_allclose(got, IAQI_LEVELS[: len(bps)])


def test_vectorised_nan_and_negative():
    got = iaqi("PM2.5", [np.nan, -1.0, 0.0, 35.0])
    assert np.isnan(got[0]) and np.isnan(got[1])
    np.testing.assert_allclose(got[2:], [0.0, 50.0])
    series = pd.Series([75.0, np.nan], index=["a", "b"])
    out = iaqi("PM2.5", series)
    assert list(out.index) == ["a", "b"] and out["a"] == 100 and np.isnan(out["b"])


def test_above_top_breakpoint():
    assert iaqi("PM2.5", 600) == 500  # cap (default)
    assert np.isnan(iaqi("PM2.5", 600, above_range="nan"))
    # last segment 350..500 -> 400..500, slope 100/150: 500 + 100 * 100 / 150
    assert iaqi("PM2.5", 600, above_range="extrapolate") == pytest.approx(500 + 100 * 100 / 150)
    # notes 2 and 3: no index from SO2 1h > 800 or O3 8h > 800, whatever above_range says
    assert np.isnan(iaqi("SO2", 801, "1h"))
    assert np.isnan(iaqi("O3", 801, "8h", above_range="cap"))
    assert iaqi("SO2", 800, "1h") == 200 and iaqi("O3", 800, "8h") == 300


def test_bad_pollutant_and_averaging():
    with pytest.raises(ValueError, match="O3 needs"):
        iaqi("O3", 10)
    with pytest.raises(ValueError, match="no 1h index for PM2.5"):
        iaqi("PM2.5", 10, "1h")
    with pytest.raises(ValueError, match="unknown pollutant"):
        iaqi("NH3", 10)


def test_aqi_max_primary_and_rounding():
    # PM2.5 100 -> 131.25 -> 132; PM10 200 -> 125; O3_8h 100 -> 50: AQI 132, primary PM2.5
    value, primary = aqi({"PM2.5": 100, "PM10": 200, "O3_8h": 100})
    assert value == 132 and primary == ("PM2.5",)
    value, _ = aqi({"PM2.5": 100, "PM10": 200}, round_up=False)
    assert value == pytest.approx(131.25)


def test_primary_pollutant_ties_and_excellent_day():
    # PM10 150 -> 100 and NO2 80 -> 100: a tie, both primary
    assert aqi({"PM10": 150, "NO2": 80, "SO2": 10}) == (100.0, ("NO2", "PM10"))
    # AQI 50 (PM2.5 = 35) is "Excellent": no primary pollutant
    assert aqi({"PM2.5": 35, "PM10": 50}) == (50.0, ())
    # round-up makes 100.4 and 100.6 both 101: a tie after rounding
    # PM2.5 75.32 -> 100 + 50*0.32/40 = 100.4; PM10 151.2 -> 100 + 50*1.2/100 = 100.6
    assert aqi({"PM2.5": 75.32, "PM10": 151.2}) == (101.0, ("PM10", "PM2.5"))


def test_aqi_frame_with_missing_values():
    frame = pd.DataFrame(
        {"station": ["a", "b", "c"], "PM2.5": [100.0, np.nan, np.nan], "PM10": [50.0, 250, np.nan]}
    )
    value, primary = aqi(frame)
    # a: 132 (PM2.5); b: PM2.5 missing, PM10 250 -> 150; c: nothing -> NaN
    assert value.iloc[0] == 132 and value.iloc[1] == 150 and np.isnan(value.iloc[2])
    assert list(primary) == [("PM2.5",), ("PM10",), ()]


def test_realtime_so2_fallback_and_note_1():
    # SO2 1h 900 > 800: use the 24h mean 200, segment 150..475 -> 100..150:
    # 100 + 50 * 50 / 325 = 107.69
    table = iaqi_table({"SO2_1h": 900, "SO2": 200}, report="realtime")
    assert table["SO2"].iloc[0] == pytest.approx(100 + 50 * 50 / 325)
    # SO2 1h 300 <= 800: 1h index 50 + 50 * 150 / 350 = 71.43 (24h value ignored)
    table = iaqi_table({"SO2_1h": 300, "SO2": 200}, report="realtime")
    assert table["SO2"].iloc[0] == pytest.approx(50 + 50 * 150 / 350)
    with pytest.warns(UserWarning, match="note 2"):
        iaqi_table({"SO2_1h": 900}, report="realtime")
    with pytest.raises(ValueError, match="note 1"):
        aqi({"SO2_1h": 100})  # 1-h SO2 in a daily report


def test_o3_8h_above_800_uses_1h():
    # O3 8h 900: no 8h index; O3 1h 900 -> 300 + 100 * 100 / 200 = 350
    assert aqi({"O3_8h": 900, "O3_1h": 900}) == (350.0, ("O3_1h",))


@pytest.mark.parametrize(
    ("value", "level", "name"),
    [
        (0, "I", "Excellent"),
        (50, "I", "Excellent"),
        (51, "II", "Good"),
        (100, "II", "Good"),
        (101, "III", "Lightly polluted"),
        (150, "III", "Lightly polluted"),
        (151, "IV", "Moderately polluted"),
        (200, "IV", "Moderately polluted"),
        (201, "V", "Heavily polluted"),
        (300, "V", "Heavily polluted"),
        (301, "VI", "Severely polluted"),
        (500, "VI", "Severely polluted"),
    ],
)
def test_category_boundaries(value, level, name):
    assert aqi_category(value) == name
    assert aqi_category(value, "level") == level


def test_category_colours_and_missing():
    assert aqi_category(120, "hex") == "#FF7E00"
    assert aqi_category(250, "colour") == "purple"
    out = aqi_category(pd.Series([10.0, np.nan]))
    assert out.iloc[0] == "Excellent" and out.iloc[1] is None


def _hours(day: str, n: int = 24) -> pd.DatetimeIndex:
    return pd.date_range(day, periods=n, freq="h")


def test_daily_aqi_means_and_completeness():
    ts = _hours("2024-01-01", 48)
    pm = np.r_[np.full(24, 80.0), np.full(24, 10.0)]
    pm[24:29] = np.nan  # day 2 keeps 19 hourly values: below the 20-hour rule
    o3 = np.full(48, 100.0)
    o3[12] = 300.0  # one high hour: daily max 1h 300; the 8h means containing it are 125
    long = pd.concat(
        [
            pd.DataFrame({"series_id": "s", "timestamp": ts, "pollutant": "PM2.5", "value": pm}),
            pd.DataFrame({"series_id": "s", "timestamp": ts, "pollutant": "O3", "value": o3}),
        ]
    )
    out = daily_aqi(long)
    day1, day2 = out.iloc[0], out.iloc[1]
    assert day1["PM2.5"] == 80 and np.isnan(day2["PM2.5"]) and day2["n_hours_PM2.5"] == 19
    # day 1: O3 1h max 300 ug/m3 is a breakpoint: IAQI 150. The max 8h mean is
    # (7 * 100 + 300) / 8 = 125, in 100..160 -> 50 + 50 * 25 / 60 = 70.83.
    # PM2.5 80 -> 100 + 50 * 5 / 40 = 106.25. AQI = 150, primary O3_1h.
    assert day1["O3_1h"] == 300 and day1["O3_8h"] == pytest.approx(125.0)
    assert day1["iaqi_O3_8h"] == pytest.approx(50 + 50 * 25 / 60)
    assert day1["aqi"] == 150 and day1["primary_pollutants"] == ("O3_1h",)
    assert day1["category"] == "Lightly polluted"
    # day 2: PM2.5 invalid, O3 flat 100: 1h 100 -> 31.25, 8h 100 -> 50 -> AQI 50, no primary
    assert day2["aqi"] == 50 and day2["primary_pollutants"] == ()


def test_daily_o3_8h_needs_14_windows_and_6_hours():
    ts = _hours("2024-01-01")
    o3 = np.full(24, 100.0)
    o3[16:] = np.nan  # only hours 00..15 observed
    wide = pd.DataFrame({"series_id": "s", "timestamp": ts, "O3": o3})
    # windows end at hour labels 7..23; window ending h covers h-7..h; valid if >= 6 of the
    # hours 0..15 are in it: h - 7 <= 15 - 5 -> h <= 17, so ends 7..17 = 11 windows < 14
    out = daily_aqi(wide, min_hours=16)
    assert np.isnan(out["O3_8h"].iloc[0]) and out["O3_1h"].iloc[0] == 100
    relaxed = daily_aqi(wide, min_hours=16, min_o3_windows=11)
    assert relaxed["O3_8h"].iloc[0] == pytest.approx(100.0)


def test_daily_aqi_wide_input_and_co_unit():
    ts = _hours("2024-03-01")
    wide = pd.DataFrame({"station": "x", "timestamp": ts, "CO": 3000.0, "TEMP": 5.0})
    out = daily_aqi(wide, station_col="station", co_unit="ug/m3")
    # 3000 ug/m3 = 3 mg/m3 -> IAQI 75 (see worked example)
    assert out["CO"].iloc[0] == 3 and out["aqi"].iloc[0] == 75
    assert out["primary_pollutants"].iloc[0] == ("CO",)


def test_daily_aqi_duplicate_rows_named():
    ts = _hours("2024-01-01", 2)
    long = pd.DataFrame(
        {"series_id": "s", "timestamp": [ts[0], ts[0]], "pollutant": "PM10", "value": [1.0, 2.0]}
    )
    with pytest.raises(ValueError, match="duplicate hourly value for station 's'"):
        daily_aqi(long)
