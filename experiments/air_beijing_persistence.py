"""Which persistence convention gives the issue-4 figures (PM2.5 MAE 10.16 / 31.84 / 58.18)?

Beijing multi-site, 12 stations, test 2016-03-01 .. 2017-02-28, every hourly origin. Variants:
``ffill`` (LastValue: last non-missing value within 288 h) or not (origins whose value is
missing are skipped), first origin 2016-02-29 23:00 or 2016-03-01 00:00, and which origins
are kept: each step scored up to the last origin whose target is in the test year
(``per_step``) or only origins with complete 24- or 72-step windows.

Run: ``.venv/bin/python experiments/air_beijing_persistence.py`` (under a minute); prints a
table of MAE at 1 / 6 / 24 h.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from citybrain_ml.data.air import load_beijing_multisite

TEST_END = pd.Timestamp("2017-02-28 23:00")


def main() -> None:
    wide = load_beijing_multisite().values.pivot(
        index="timestamp", columns="series_id", values="value"
    )
    times = wide.index
    rows = []
    for ffill in (True, False):
        source = wide.ffill(limit=287) if ffill else wide
        for start in ("2016-02-29 23:00", "2016-03-01 00:00"):
            for window in ("per_step", "24", "72"):
                row = {"ffill": ffill, "first_origin": start, "windows": window}
                for h in (1, 6, 24):
                    back = h if window == "per_step" else int(window)
                    keep = (times >= pd.Timestamp(start)) & (
                        times <= TEST_END - pd.Timedelta(hours=back)
                    )
                    origins = times[keep]
                    pred = source.loc[origins].to_numpy()
                    actual = wide.reindex(origins + pd.Timedelta(hours=h)).to_numpy()
                    ok = ~np.isnan(pred) & ~np.isnan(actual)
                    row[f"mae_{h}h"] = round(float(np.abs(pred - actual)[ok].mean()), 2)
                rows.append(row)
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
