"""The Python daemon Spark forks its workers from, with the scoring stack imported once.

Spark starts one daemon per executor (``python -m <spark.python.daemon.module>``) and forks
a worker from it for each Python task slot. PySpark's own daemon imports nothing, so every
worker pays ~3 s importing MLflow, LightGBM and citybrain_ml before it scores its first
bucket. This one imports them first and then runs PySpark's daemon unchanged: forked workers
inherit the modules. Only modules are imported -- no model is loaded and no thread started
before the fork. :func:`citybrain_ml.spark.session.get_spark` sets it for the sessions it
starts; executors need citybrain_ml installed (as they do to score at all).
"""

import lightgbm  # noqa: F401
import mlflow.pyfunc  # noqa: F401
from pyspark.daemon import manager

import citybrain_ml.data.validation  # noqa: F401
import citybrain_ml.models.lightgbm  # noqa: F401
import citybrain_ml.scoring  # noqa: F401
import citybrain_ml.tracking.pyfunc  # noqa: F401

if __name__ == "__main__":
    manager()
