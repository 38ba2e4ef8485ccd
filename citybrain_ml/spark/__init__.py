"""Scale-out on Apache Spark (optional extra: ``pip install -e '.[spark]'``, needs Java 17+).

Everything here runs the same logic as the single-process path on Spark DataFrames, so a job
that outgrows one machine gives the same answers under ``spark-submit``.
"""

from citybrain_ml.spark.events import events_to_grid_spark, load_events_spark

# distributed batch scoring; the function shadows its module's name on the package (import
# other names with ``from citybrain_ml.spark.forecast import run_spark_forecast``)
from citybrain_ml.spark.forecast import forecast
from citybrain_ml.spark.session import SparkUnavailable, get_spark
from citybrain_ml.spark.training import fit_global, fit_many_models, training_frame

__all__ = [
    "SparkUnavailable",
    "events_to_grid_spark",
    "fit_global",
    "fit_many_models",
    "forecast",
    "get_spark",
    "load_events_spark",
    "training_frame",
]
