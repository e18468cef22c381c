"""The metrics report as an asset of the refresh: HTML + PDF of the last complete month (analytics/report)."""

import dagster as dg
import psycopg2

from orchestration.defs.publish import PUBLISH_KEY
from orchestration.defs.resources import SettingsResource, WarehouseResource
from saas_metrics.analytics import report as metrics_report

# the marts the report reads: it is built after them in every refresh
REPORT_MARTS = [
    "saas_kpis_monthly",
    "mrr_monthly",
    "cohort_retention",
    "mrr_by_plan",
    "customer_mrr_monthly",
    "mrr_by_segment",
    "churn_risk",
]


@dg.asset(
    key=["reports", "metrics_report"],
    group_name="reports",
    # after marts_publication: the report shows what BI tools show
    deps=[dg.AssetKey(["marts", mart]) for mart in REPORT_MARTS] + [PUBLISH_KEY],
    description="The metrics report for the last complete month: key-metric cards, MRR chart, cohort heatmap, "
    "revenue breakdown, waterfall and churn risk, as one offline HTML file and a PDF under "
    "$SAAS_METRICS_HOME/reports/<month>/.",
    op_tags={"saas_metrics/step": "report"},
)
def report(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, runtime_settings: SettingsResource
) -> dg.MaterializeResult:
    with psycopg2.connect(warehouse.url()) as conn:
        try:
            files = metrics_report.write_report(conn, runtime_settings.get().home)
        except metrics_report.ReportError as exc:  # a new account: no complete month yet
            context.log.warning(f"no report: {exc}")
            return dg.MaterializeResult(metadata={"skipped": str(exc)})
    figures = files.figures
    metadata = {
        "path": dg.MetadataValue.path(str(files.html)),
        "pdf_path": dg.MetadataValue.path(str(files.pdf)),
        "month": figures["month"],
        "currency": figures["currency"],
        "cards": dg.MetadataValue.md("\n".join(["```", *files.cards, "```"])),
        "concentration_risks": ", ".join(figures["concentration_risks"]) or "none",
        "churn_risk_customers": figures["churn_risk_customers"],
    }
    for key in ("mrr", "mrr_change", "mrr_growth_rate", "paying_customers", "logo_churn_rate", "ltv_to_cac"):
        if figures[key] is not None:
            metadata[key] = dg.MetadataValue.float(figures[key])
    context.log.info(f"report for {figures['month']}: {files.html}")
    return dg.MaterializeResult(metadata=metadata)
