"""Lake mode (README "Lake mode"): product events in a lake, their daily rollups built on a Spark cluster and
published into PostgreSQL. settings.py: the settings; cluster.py: the local standalone cluster (`saas-metrics
lake start|stop|status`); spark.py: the connection to a cluster, for dbt and for Python; publish.py: the
rollups into PostgreSQL."""
