"""One place that finds or starts the Spark session (master from argument, env, or local)."""

from __future__ import annotations

import os
import shutil
import sys

DEFAULT_MASTER = "local[*]"
MASTER_ENV = "CITYBRAIN_SPARK_MASTER"


class SparkUnavailable(ImportError):
    """pyspark or Java is missing; the message says how to install them."""


def check_spark() -> None:
    """Raise :class:`SparkUnavailable` with an install hint when Spark cannot start here."""
    try:
        import pyspark  # noqa: F401
    except ImportError as exc:
        raise SparkUnavailable("the Spark engine needs pyspark: pip install -e '.[spark]'") from exc
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        raise SparkUnavailable(
            "Spark needs Java 17+: install it (Debian: apt-get install openjdk-17-jre-headless) "
            "or set JAVA_HOME"
        )


def get_spark(master: str | None = None, app_name: str = "citybrain", conf: dict | None = None):
    """Return the active Spark session, or start one.

    Under ``spark-submit`` (or on Databricks) a session already exists and is returned as it
    is, so the cluster's master and settings win. Otherwise a session is started on
    ``master``, else ``$CITYBRAIN_SPARK_MASTER``, else ``local[*]``.

    Parameters
    ----------
    master : str, optional
        Spark master URL, e.g. ``local[2]``, ``yarn``, ``k8s://...``.
    app_name : str
        Application name shown in the Spark UI.
    conf : dict, optional
        Extra Spark settings for a newly started session.

    Returns
    -------
    pyspark.sql.SparkSession
    """
    check_spark()
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    chosen = master or os.environ.get(MASTER_ENV)
    # a Python app under spark-submit (its JVM gateway is already up): spark-submit's
    # --master stands unless one was named here; otherwise local[*]
    if chosen is None and not os.environ.get("PYSPARK_GATEWAY_PORT"):
        chosen = DEFAULT_MASTER
    builder = SparkSession.builder.appName(app_name)
    if chosen:
        builder = builder.master(chosen)
    if chosen and chosen.startswith("local"):
        # local Python workers run this interpreter (its venv has pandas, pyarrow,
        # citybrain_ml), not the first python3 on PATH, unless $PYSPARK_PYTHON is set
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    settings = {
        # Arrow moves pandas frames to and from the JVM without row-by-row pickling
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.showConsoleProgress": "false",
        # workers forked from a daemon that has MLflow, LightGBM and citybrain_ml imported
        "spark.python.daemon.module": "citybrain_ml.spark.daemon",
        **(conf or {}),
    }
    for key, value in settings.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()
