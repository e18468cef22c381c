"""What saas-metrics computes outside dbt, from the marts: the MRR forecast (forecast.py), the churn model
(churn_model.py), the monthly report (report/) and the alerts (alerts.py). The platform they run on
(configuration, the embedded PostgreSQL, dbt, locks, roles) is the rest of saas_metrics/; the demo account is
saas_metrics/demo/."""
