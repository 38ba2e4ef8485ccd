"""Scale-out on Apache Spark (optional extra: ``pip install -e '.[spark]'``, needs Java 17+).

Everything here runs the same logic as the single-process path on Spark DataFrames, so a job
that outgrows one machine gives the same answers under ``spark-submit``.
"""

from citybrain_ml.spark.session import SparkUnavailable, get_spark

__all__ = ["SparkUnavailable", "get_spark"]
