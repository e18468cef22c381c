"""Where the report's files go, written atomically: one folder per month under $SAAS_METRICS_HOME/reports."""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from saas_metrics.analytics.report.data import ReportError, card_lines, load
from saas_metrics.analytics.report.html_page import render_html
from saas_metrics.analytics.report.pdf import render_pdf


@dataclass(frozen=True)
class ReportFiles:
    month: dt.date
    html: Path
    pdf: Path
    figures: dict
    cards: list[str]


def report_dir(home: Path, month: dt.date) -> Path:
    return Path(home) / "reports" / f"{month:%Y-%m}"


def _write_atomically(path: Path, write) -> None:
    """Readers see the old file or the new one, never half of one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(conn, home: Path, month: dt.date | None = None) -> ReportFiles:
    """Render the HTML and the PDF for `month` (default: the last complete month) under home/reports/."""
    data = load(conn, month)
    folder = report_dir(home, data.month)
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"saas-metrics-report-{data.month:%Y-%m}"
    html_path, pdf_path = folder / f"{stem}.html", folder / f"{stem}.pdf"
    page = render_html(data)
    _write_atomically(html_path, lambda p: p.write_text(page, encoding="utf-8"))
    _write_atomically(pdf_path, lambda p: render_pdf(data, p))
    return ReportFiles(data.month, html_path, pdf_path, data.figures, card_lines(data))


def parse_month(text: str) -> dt.date:
    try:
        return dt.datetime.strptime(text, "%Y-%m").date()
    except ValueError:
        raise ReportError(f"--month must look like 2026-01, got {text!r}") from None
