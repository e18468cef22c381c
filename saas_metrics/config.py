"""The one module that reads the environment.

Everything else receives a `Settings` object (or the environment variables this module
derives from it for dbt, dlt and Dagster), so that configuration has exactly one entry
point and one place to document it. What other modules need of the environment besides settings
(the environment a subprocess inherits, what the process itself exported for dlt, the JDK, whether
`dagster dev` started it) they ask of a function here; tests/test_layout.py fails on an `os.environ`
or `os.getenv` read anywhere else.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from saas_metrics.lake.settings import LakeConfigError, LakeSettings, lake_settings


def _project_dir() -> tuple[Path, bool]:
    """Where dbt_project/ and dagster.yaml are, and whether that is a checkout: the repository this package
    runs from (a clone, an editable install), else the copy an installed wheel carries beside its modules
    (saas_metrics/project/, put there by setup.py)."""
    from importlib.resources import files

    package = Path(str(files("saas_metrics"))).resolve()
    checkout = package.parent
    if (checkout / "dbt_project" / "dbt_project.yml").is_file() and (checkout / "pyproject.toml").is_file():
        return checkout, True
    return package / "project", False


PROJECT_DIR, IS_CHECKOUT = _project_dir()
DBT_PROJECT_DIR = PROJECT_DIR / "dbt_project"
# SAAS_METRICS_HOME's default: the checkout's own folder, or the user's for an installed package
DEFAULT_HOME = PROJECT_DIR / ".saas-metrics" if IS_CHECKOUT else Path.home() / ".saas-metrics"


def dbt_project_vars() -> dict:
    """The dbt project's vars as dbt_project.yml sets them (the reporting currency, thresholds): read by
    the Python that works beside dbt (predictions, the report), so that each lives in one place."""
    import yaml

    return yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text()).get("vars", {}) or {}


def reporting_currency() -> str:
    """The dbt var `reporting_currency`, lower case."""
    return str(dbt_project_vars().get("reporting_currency", "usd")).lower()


DEFAULT_PG_PORT = 54329

# Schemas are part of the public contract (README "Data flow", "Mart catalogue").
RAW_STRIPE_SCHEMA = "raw_stripe"
RAW_PRODUCT_SCHEMA = "raw_product"
RAW_FINANCE_SCHEMA = "raw_finance"
MARTS_SCHEMA = "marts"


class ConfigError(Exception):
    """A configuration problem a user can fix; the CLI prints it as one line."""


# the name of the one account configured the old way (STRIPE_API_KEY alone): its raw rows, its dlt
# pipeline ("stripe") and its marts' billing_account
LEGACY_STRIPE_ACCOUNT = "default"
# the billing account of the contracts file's rows (METRICS.md "Contracts outside Stripe"): no Stripe account's name
CONTRACTS_BILLING_ACCOUNT = "contracts"
_ACCOUNT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


@dataclass(frozen=True)
class StripeAccount:
    """One Stripe account to load (README "Several Stripe accounts"): its name (the `account` of its raw rows
    and the `billing_account` of the marts), its key (read from the environment variable `api_key_env` names;
    never written in a file), and for a platform reading a connected account, that account's id (sent as the
    Stripe-Account header)."""

    name: str
    api_key: str = field(repr=False)
    api_key_env: str = "STRIPE_API_KEY"
    stripe_account: str | None = None
    api_base: str | None = None

    @property
    def pipeline_name(self) -> str:
        """The dlt pipeline (and its incremental state) of this account: the legacy account keeps "stripe"."""
        return "stripe" if self.name == LEGACY_STRIPE_ACCOUNT else f"stripe__{self.name}"


@dataclass(frozen=True)
class WebhookSettings:
    """The Stripe webhook receiver (`saas-metrics webhooks`, README "Intraday freshness"): the endpoints'
    signing secrets (STRIPE_WEBHOOK_SECRET, comma-separated: one per endpoint, or the old and the new one
    while Stripe rolls a secret), and how long it waits for quiet before refreshing."""

    secrets: tuple[str, ...] = field(default=(), repr=False)
    debounce_seconds: float = 60.0  # a refresh starts this long after the last new event...
    max_delay_seconds: float = 300.0  # ...or this long after the first one it waits for, whichever is sooner
    tolerance_seconds: int = 300  # a signature older than this is refused (Stripe's libraries' default)


@dataclass(frozen=True)
class AlertSettings:
    """Where alerts go (README "Configuration", "Operating it in Dagster"); neither channel set: alerts
    are only logged."""

    webhook_url: str | None = field(default=None, repr=False)  # Slack-compatible incoming webhook
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    smtp_starttls: bool = False
    email_from: str = "saas-metrics@localhost"
    email_to: tuple[str, ...] = ()
    churn_mrr_threshold: float = 200.0  # a churn or scheduled cancellation above this MRR alerts
    logo_churn_threshold: float = 0.05  # monthly logo churn above this alerts
    nrr_threshold: float = 1.0  # monthly NRR below this alerts

    @property
    def channels(self) -> list[str]:
        names = []
        if self.webhook_url:
            names.append("webhook")
        if self.smtp_host and self.email_to:
            names.append("email")
        return names


@dataclass(frozen=True)
class ProductSettings:
    """Where product events come from (README "Configuration"; ingestion/product/README.md); neither set:
    none are loaded."""

    database_url: str | None = field(default=None, repr=False)  # the application's database
    table: str = "events"
    columns: str | None = None  # raw column=source column, comma-separated
    events_dir: Path | None = None
    file_columns: str | None = None
    late_window_hours: float = 72.0
    mapping_csv: Path | None = None

    @property
    def configured(self) -> bool:
        return bool(self.database_url or self.events_dir)


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str | None
    pg_port: int
    stripe_api_key: str | None = field(repr=False)
    stripe_api_base: str | None
    stripe_max_rps: float
    stripe_concurrency: int
    spend_csv: Path | None = None
    gross_margin_csv: Path | None = None
    pnl_csv: Path | None = None
    contracts_csv: Path | None = None  # contracts billed outside Stripe (SAAS_METRICS_CONTRACTS_CSV)
    customer_mapping_csv: Path | None = None  # one customer across sources (SAAS_METRICS_CUSTOMER_MAPPING_CSV)
    alerts: AlertSettings = field(default_factory=lambda: AlertSettings())
    product: ProductSettings = field(default_factory=lambda: ProductSettings())
    ingest_retries: int = 2  # a failed load step is retried this many times...
    ingest_retry_delay: float = 60.0  # ...the n-th n times this many seconds after its failure (60, 120)
    stripe_timeout: float = 80.0  # seconds one Stripe request may take (STRIPE_TIMEOUT)
    lake: LakeSettings = field(default_factory=LakeSettings)  # lake mode (saas_metrics/lake/settings.py)
    # SAAS_METRICS_STRIPE_ACCOUNTS: the accounts it lists, when set (else the one of STRIPE_API_KEY)
    stripe_accounts_file: tuple[StripeAccount, ...] = ()
    # DAGSTER_PG_URL: Dagster's own storage elsewhere than the warehouse (with DATABASE_URL only)
    dagster_pg_url: str | None = field(default=None, repr=False)
    webhooks: WebhookSettings = field(default_factory=lambda: WebhookSettings())

    @property
    def uses_embedded_db(self) -> bool:
        return self.database_url is None

    @property
    def pgdata(self) -> Path:
        return self.home / "pgdata"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def dlt_pipelines_dir(self) -> Path:
        return self.home / "dlt"

    @property
    def stripe_accounts(self) -> tuple[StripeAccount, ...]:
        """The Stripe accounts to load: those of SAAS_METRICS_STRIPE_ACCOUNTS, else the one STRIPE_API_KEY
        gives (named LEGACY_STRIPE_ACCOUNT), else none."""
        if self.stripe_accounts_file:
            return self.stripe_accounts_file
        if self.stripe_api_key:
            return (StripeAccount(LEGACY_STRIPE_ACCOUNT, self.stripe_api_key, api_base=self.stripe_api_base),)
        return ()

    @property
    def stripe_configured(self) -> bool:
        return bool(self.stripe_accounts)


def _load_dotenv() -> None:
    env_file = Path.cwd() / ".env"
    if not env_file.exists():
        env_file = PROJECT_DIR / ".env"
    if env_file.exists():
        from dotenv import load_dotenv

        load_dotenv(env_file, override=False)


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from exc


def _float_env(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {raw!r}")
    return value


def demo_settings(
    base: Settings, api_base: str, api_key: str, demo_dir: Path, stripe_accounts: tuple[StripeAccount, ...] = ()
) -> Settings:
    """The settings of a demo run: `base` (its home, ports, alerts) with the demo's own Stripe server and
    key, the finance files and product events it generated beside the store, and always the embedded
    PostgreSQL (a DATABASE_URL is not the demo's). STRIPE_MAX_RPS is kept when set; a local server
    takes 1000 requests a second."""
    from dataclasses import replace

    return replace(
        base,
        database_url=None,
        stripe_api_key=api_key,
        stripe_api_base=api_base,
        stripe_accounts_file=stripe_accounts,  # the demo's own accounts (none: one), never the user's
        stripe_max_rps=_float_env("STRIPE_MAX_RPS", 1000.0),
        spend_csv=demo_dir / "finance" / "marketing_spend.csv",
        gross_margin_csv=demo_dir / "finance" / "gross_margin.csv",
        pnl_csv=demo_dir / "finance" / "pnl.csv",
        contracts_csv=demo_dir / "finance" / "contracts.csv",
        product=replace(base.product, database_url=None, events_dir=demo_dir / "events"),
    )


def load_settings() -> Settings:
    """Read the environment (and a `.env` file if present) into `Settings`."""
    _load_dotenv()
    database_url = os.environ.get("DATABASE_URL") or None
    if database_url is not None:
        parse_database_url(database_url)  # fail early on a malformed URL
    api_base = os.environ.get("STRIPE_API_BASE") or None
    if api_base is not None and not api_base.startswith(("http://", "https://")):
        raise ConfigError(f"STRIPE_API_BASE must start with http:// or https://, got {api_base!r}")
    return Settings(
        home=Path(os.environ.get("SAAS_METRICS_HOME") or DEFAULT_HOME).expanduser().resolve(),
        database_url=database_url,
        pg_port=_int_env("SAAS_METRICS_PG_PORT", DEFAULT_PG_PORT),
        stripe_api_key=os.environ.get("STRIPE_API_KEY") or None,
        stripe_api_base=api_base.rstrip("/") if api_base else None,
        stripe_max_rps=_float_env("STRIPE_MAX_RPS", 25.0),
        stripe_concurrency=_int_env("STRIPE_CONCURRENCY", 4),
        spend_csv=_path_env("SAAS_METRICS_SPEND_CSV"),
        gross_margin_csv=_path_env("SAAS_METRICS_GROSS_MARGIN_CSV"),
        pnl_csv=_path_env("SAAS_METRICS_PNL_CSV"),
        contracts_csv=_path_env("SAAS_METRICS_CONTRACTS_CSV"),
        customer_mapping_csv=_path_env("SAAS_METRICS_CUSTOMER_MAPPING_CSV"),
        alerts=_alert_settings(),
        product=_product_settings(),
        ingest_retries=_int_env("SAAS_METRICS_INGEST_RETRIES", 2),
        ingest_retry_delay=_float_env("SAAS_METRICS_INGEST_RETRY_DELAY", 60.0),
        stripe_timeout=_float_env("STRIPE_TIMEOUT", 80.0),
        lake=_lake_settings(),
        stripe_accounts_file=_stripe_accounts(api_base.rstrip("/") if api_base else None),
        dagster_pg_url=os.environ.get("DAGSTER_PG_URL") or None,
        webhooks=_webhook_settings(),
    )


def _webhook_settings() -> WebhookSettings:
    secrets = tuple(s.strip() for s in (os.environ.get("STRIPE_WEBHOOK_SECRET") or "").split(",") if s.strip())
    for secret in secrets:
        if not secret.startswith("whsec_"):
            raise ConfigError("STRIPE_WEBHOOK_SECRET must hold endpoint signing secrets, which start with whsec_")
    debounce = _float_env("SAAS_METRICS_WEBHOOK_DEBOUNCE_SECONDS", 60.0)
    max_delay = _float_env("SAAS_METRICS_WEBHOOK_MAX_DELAY_SECONDS", 300.0)
    if max_delay < debounce:
        raise ConfigError(
            f"SAAS_METRICS_WEBHOOK_MAX_DELAY_SECONDS ({max_delay:g}) must be at least "
            f"SAAS_METRICS_WEBHOOK_DEBOUNCE_SECONDS ({debounce:g})"
        )
    return WebhookSettings(secrets=secrets, debounce_seconds=debounce, max_delay_seconds=max_delay)


def _stripe_accounts(default_api_base: str | None) -> tuple[StripeAccount, ...]:
    """The accounts SAAS_METRICS_STRIPE_ACCOUNTS lists (a TOML file of [[account]] tables: name, api_key_env,
    optional stripe_account and api_base), each key read from the variable it names; every error one line
    naming the file and the account."""
    import tomllib

    raw = os.environ.get("SAAS_METRICS_STRIPE_ACCOUNTS")
    if not raw:
        return ()
    path = _path_env("SAAS_METRICS_STRIPE_ACCOUNTS")
    try:
        document = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a TOML file ({exc})") from None
    unknown = set(document) - {"account"}
    entries = document.get("account")
    if unknown or not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: expected one [[account]] table per Stripe account and nothing else")
    accounts: list[StripeAccount] = []
    for n, entry in enumerate(entries, start=1):
        name = entry.get("name")
        where = f"{path}: account {name!r}" if isinstance(name, str) else f"{path}: account {n}"
        extra = set(entry) - {"name", "api_key_env", "stripe_account", "api_base", "api_key"}
        if "api_key" in entry:
            raise ConfigError(f"{where}: never write a key in the file; set api_key_env to the variable holding it")
        if extra:
            raise ConfigError(f"{where}: unknown setting(s) {', '.join(sorted(extra))}")
        if not isinstance(name, str) or not _ACCOUNT_NAME.match(name):
            raise ConfigError(
                f"{where}: name must be lower-case letters, digits and _ (starting with a letter, at most 40)"
            )
        if name == CONTRACTS_BILLING_ACCOUNT:
            raise ConfigError(f"{where}: the name {name!r} is the contracts file's account; name it otherwise")
        if any(a.name == name for a in accounts):
            raise ConfigError(f"{where}: listed twice")
        key_env = entry.get("api_key_env")
        if not isinstance(key_env, str) or not key_env:
            raise ConfigError(f"{where}: api_key_env must name the environment variable holding its key")
        key = os.environ.get(key_env)
        if not key:
            raise ConfigError(f"{where}: {key_env} (its api_key_env) is not set")
        connected = entry.get("stripe_account")
        if connected is not None and (not isinstance(connected, str) or not connected.startswith("acct_")):
            raise ConfigError(f"{where}: stripe_account must be a connected account id (acct_...)")
        base = entry.get("api_base", default_api_base)
        if base is not None and (not isinstance(base, str) or not base.startswith(("http://", "https://"))):
            raise ConfigError(f"{where}: api_base must start with http:// or https://")
        accounts.append(StripeAccount(name, key, key_env, connected, base.rstrip("/") if base else None))
    return tuple(accounts)


def _lake_settings() -> LakeSettings:
    try:
        return lake_settings(os.environ)
    except LakeConfigError as exc:
        raise ConfigError(str(exc)) from None


def _alert_settings() -> AlertSettings:
    webhook = os.environ.get("SAAS_METRICS_ALERT_WEBHOOK_URL") or None
    if webhook is not None and not webhook.startswith(("http://", "https://")):
        raise ConfigError("SAAS_METRICS_ALERT_WEBHOOK_URL must start with http:// or https://")
    smtp_host = os.environ.get("SAAS_METRICS_SMTP_HOST") or None
    to = tuple(a.strip() for a in (os.environ.get("SAAS_METRICS_ALERT_EMAIL_TO") or "").split(",") if a.strip())
    if smtp_host and not to:
        raise ConfigError("SAAS_METRICS_SMTP_HOST is set but SAAS_METRICS_ALERT_EMAIL_TO names no recipient")
    for address in to:
        if "@" not in address:
            raise ConfigError(f"SAAS_METRICS_ALERT_EMAIL_TO: {address!r} is not an email address")
    return AlertSettings(
        webhook_url=webhook,
        smtp_host=smtp_host,
        smtp_port=_int_env("SAAS_METRICS_SMTP_PORT", 25),
        smtp_user=os.environ.get("SAAS_METRICS_SMTP_USER") or None,
        smtp_password=os.environ.get("SAAS_METRICS_SMTP_PASSWORD") or None,
        smtp_starttls=(os.environ.get("SAAS_METRICS_SMTP_STARTTLS") or "").lower() in ("1", "true", "yes"),
        email_from=os.environ.get("SAAS_METRICS_ALERT_EMAIL_FROM") or "saas-metrics@localhost",
        email_to=to,
        churn_mrr_threshold=_float_env("SAAS_METRICS_ALERT_CHURN_MRR", 200.0),
        logo_churn_threshold=_float_env("SAAS_METRICS_ALERT_LOGO_CHURN", 0.05),
        nrr_threshold=_float_env("SAAS_METRICS_ALERT_NRR", 1.0),
    )


def _product_settings() -> ProductSettings:
    events_dir = os.environ.get("SAAS_METRICS_EVENTS_DIR") or None
    folder = None
    if events_dir:
        folder = Path(events_dir).expanduser().resolve()
        if not folder.is_dir():
            raise ConfigError(f"SAAS_METRICS_EVENTS_DIR names {events_dir!r}, which is not a folder")
    raw_window = os.environ.get("SAAS_METRICS_EVENTS_LATE_WINDOW_HOURS")
    window = 72.0
    if raw_window not in (None, ""):
        try:
            window = float(raw_window)
        except ValueError as exc:
            raise ConfigError(f"SAAS_METRICS_EVENTS_LATE_WINDOW_HOURS must be a number, got {raw_window!r}") from exc
        if window < 0:
            raise ConfigError(f"SAAS_METRICS_EVENTS_LATE_WINDOW_HOURS must not be negative, got {raw_window!r}")
    return ProductSettings(
        database_url=os.environ.get("SAAS_METRICS_EVENTS_DB_URL") or None,
        table=os.environ.get("SAAS_METRICS_EVENTS_TABLE") or "events",
        columns=os.environ.get("SAAS_METRICS_EVENTS_COLUMNS") or None,
        events_dir=folder,
        file_columns=os.environ.get("SAAS_METRICS_EVENTS_FILE_COLUMNS") or None,
        late_window_hours=window,
        mapping_csv=_path_env("SAAS_METRICS_ACCOUNT_MAPPING_CSV"),
    )


def _path_env(name: str) -> Path | None:
    raw = os.environ.get(name)
    if not raw:
        return None
    path = Path(raw).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"{name} names {raw!r}, which is not a file")
    return path


@dataclass(frozen=True)
class PgParams:
    host: str
    port: int
    user: str
    password: str
    dbname: str


def parse_database_url(url: str) -> PgParams:
    parsed = urlparse(url)
    if parsed.scheme not in ("postgresql", "postgres", "postgresql+psycopg2"):
        raise ConfigError(f"DATABASE_URL must be a postgresql:// URL, got scheme {parsed.scheme!r}")
    dbname = parsed.path.lstrip("/")
    if not dbname:
        raise ConfigError("DATABASE_URL must name a database (postgresql://user:pass@host:port/dbname)")
    try:
        port = parsed.port or 5432
    except ValueError as exc:
        raise ConfigError(f"DATABASE_URL has an invalid port: {exc}") from exc
    return PgParams(
        host=parsed.hostname or "127.0.0.1",
        port=port,
        user=unquote(parsed.username or ""),
        password=unquote(parsed.password or ""),
        dbname=dbname,
    )


def dbt_connection_env(database_url: str) -> dict[str, str]:
    """The variables dbt_project/profiles.yml reads, for `database_url`."""
    pg = parse_database_url(database_url)
    return {
        "SAAS_METRICS_PG_HOST": pg.host,
        "SAAS_METRICS_PG_PORT_DBT": str(pg.port),
        "SAAS_METRICS_PG_USER": pg.user,
        "SAAS_METRICS_PG_PASSWORD": pg.password,
        "SAAS_METRICS_PG_DBNAME": pg.dbname,
    }


def warehouse_environment(database_url: str, dagster_url: str, settings: Settings) -> dict[str, str]:
    """Environment variables that dbt (profiles.yml), dlt and Dagster (dagster.yaml) read."""
    # dagster-postgres goes through SQLAlchemy, whose default PostgreSQL driver is psycopg 3;
    # psycopg2 is the one installed
    scheme, _, rest = dagster_url.partition("://")
    if scheme in ("postgresql", "postgres"):
        dagster_url = f"postgresql+psycopg2://{rest}"
    return {
        "DATABASE_URL": database_url,
        "DAGSTER_PG_URL": dagster_url,
        "DAGSTER_HOME": str(settings.dagster_home),
        # dbt profiles.yml
        **dbt_connection_env(database_url),
        # dlt destination
        "DESTINATION__POSTGRES__CREDENTIALS": database_url,
        "SAAS_METRICS_DLT_DIR": str(settings.dlt_pipelines_dir),
        # a project-local dlt folder keeps dlt from writing into the user's home
        "DLT_DATA_DIR": str(settings.dlt_pipelines_dir),
        # nothing about a run leaves the machine: dlt's anonymous usage telemetry off (dbt's is off in
        # dbt_project.yml, Dagster's in dagster.yaml)
        "RUNTIME__DLTHUB_TELEMETRY": "false",
    }


# What other modules need of the environment besides Settings: each read here, where it is documented.

# set by `saas-metrics ui` for the `dagster dev` it starts, which then does not parse dbt again
DBT_PREPARED_ENV = "SAAS_METRICS_DBT_PREPARED"
# set by a refresh for its own dbt build only (macros/publish.sql, orchestration/defs/publish.py): not configuration
PUBLISH_RUN_ENV = "SAAS_METRICS_PUBLISH_RUN_ID"
DLT_CREDENTIALS_ENV = "DESTINATION__POSTGRES__CREDENTIALS"


def child_environment(overrides: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a subprocess (dbt, sqlfluff, Spark) starts with: this process's, with `overrides`."""
    return {**os.environ, **(overrides or {})}


def exported_dlt_credentials() -> str | None:
    """The warehouse URL with the password libpq resolved, as runtime.prepare_environment() exported it for
    dlt (in this process, or in the `saas-metrics ui` that started this `dagster dev`)."""
    return os.environ.get(DLT_CREDENTIALS_ENV) or None


def dagster_dev_without_parsed_dbt() -> bool:
    """Started by a plain `dagster dev` (not by `saas-metrics ui`, which parses dbt first and says so)."""
    return bool(os.environ.get("DAGSTER_IS_DEV_CLI")) and not os.environ.get(DBT_PREPARED_ENV)


def dbt_environment_variables() -> list[tuple[str, str]]:
    """The environment variables dbt's YAML may read (SAAS_METRICS_*, DBT_*), sorted; not the password nor
    the run-scoped ones: what a parsed manifest depends on besides the project's files."""
    return [
        (name, os.environ[name])
        for name in sorted(os.environ)
        if name.startswith(("SAAS_METRICS_", "DBT_"))
        and name not in ("SAAS_METRICS_PG_PASSWORD", DBT_PREPARED_ENV, PUBLISH_RUN_ENV)
    ]


def java_home_env() -> str | None:
    """JAVA_HOME when it is set (lake mode's cluster looks for `java` on PATH otherwise)."""
    return os.environ.get("JAVA_HOME") or None


def path_with(bindir: str) -> str:
    """PATH with `bindir` first (this environment's tools before any other's)."""
    return bindir + os.pathsep + os.environ.get("PATH", "")


def warnings_with(filter_: str) -> str:
    """PYTHONWARNINGS with `filter_` added to what the user set."""
    return ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), filter_]))
