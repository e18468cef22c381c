"""Before a refresh starts: can we reach the warehouse and Stripe? Each problem is one line naming the
cause and the variable to fix, within seconds (not a page of traceback after minutes of retries)."""

from __future__ import annotations

import logging
import re
import time
from urllib.parse import quote, urlparse, urlunparse

import psycopg2

from saas_metrics.config import ConfigError, parse_database_url

CONNECT_TIMEOUT_SECONDS = 5
STRIPE_PREFLIGHT_TIMEOUT_SECONDS = 8
STRIPE_PREFLIGHT_ATTEMPTS = 4  # the first Stripe request, tried again as the load tries one (about 3 s in all)

logger = logging.getLogger("saas_metrics.preflight")


def connect(url: str, variable: str = "DATABASE_URL", timeout: int = CONNECT_TIMEOUT_SECONDS):
    """A psycopg2 connection to `url`, exactly as psql would make it (libpq reads PGPASSWORD and
    ~/.pgpass when the URL has no password); any failure is a ConfigError in one line."""
    try:
        return psycopg2.connect(url, connect_timeout=timeout)
    except psycopg2.OperationalError as exc:
        raise ConfigError(explain_connection_error(url, str(exc), variable, timeout)) from exc


def explain_connection_error(url: str, message: str, variable: str, timeout: int = CONNECT_TIMEOUT_SECONDS) -> str:
    pg = parse_database_url(url)
    where = f"{pg.host}:{pg.port}"
    text = " ".join(message.split())
    if match := re.search(r'password authentication failed for user "([^"]+)"', text):
        return f"{variable}: PostgreSQL at {where} refused the password of user {match.group(1)}: fix the password"
    if "no password supplied" in text:
        return (
            f"{variable}: PostgreSQL at {where} asks user {pg.user or '(default)'} for a password and none was "
            f"given: put it in {variable}, PGPASSWORD or ~/.pgpass"
        )
    if match := re.search(r'database "([^"]+)" does not exist', text):
        return (
            f"{variable}: database {match.group(1)} does not exist on {where}: create it (createdb) or fix {variable}"
        )
    if match := re.search(r'role "([^"]+)" does not exist', text):
        return f"{variable}: user {match.group(1)} does not exist on {where}: fix the user in {variable}"
    if "could not translate host name" in text:
        return f"{variable}: unknown host {pg.host}: fix the host in {variable}"
    if "Connection refused" in text:
        return f"{variable}: nothing accepts connections at {where} (is PostgreSQL running there?): fix {variable}"
    if "timeout expired" in text:
        return f"{variable}: no answer from {where} within {timeout} s: fix the host or port in {variable}"
    if "no pg_hba.conf entry" in text:
        return f"{variable}: PostgreSQL at {where} does not let this user in (no pg_hba.conf entry): {text}"
    first = text.split(" DETAIL:")[0].strip() or "unknown error"
    return f"{variable}: cannot connect to PostgreSQL at {where}: {first}"


def check_database(url: str, variable: str = "DATABASE_URL") -> str:
    """Connect once; return the URL with the password libpq used (from the URL, PGPASSWORD or
    ~/.pgpass; none with trust or peer authentication) for the tools that want one in the URL (dlt)."""
    conn = connect(url, variable)
    try:
        password = conn.info.password or ""
    finally:
        conn.close()
    return with_password(url, password)


def with_password(url: str, password: str) -> str:
    """`url` with `password` when it has none (an empty password is one dlt accepts and libpq ignores)."""
    parsed = urlparse(url)
    if parsed.password is not None:
        return url
    user = parsed.username or ""
    host = parsed.hostname or ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}" + (f":{parsed.port}" if parsed.port else "")
    return urlunparse(parsed._replace(netloc=netloc))


def check_stripe(
    api_key: str,
    api_base: str | None,
    timeout: float = STRIPE_PREFLIGHT_TIMEOUT_SECONDS,
    attempts: int = STRIPE_PREFLIGHT_ATTEMPTS,
) -> None:
    """One request (the first page of customers, which the load reads anyway), tried as the load tries one:
    what it proves to be configuration ends the run here, in one line: a refused key (401, 403), an unknown
    host, a server refusing connections on every attempt. A fault that may pass (a reset or dropped
    connection, no answer in time, a failed name lookup, a body cut short, 429, 5xx) is not blamed on a
    setting: the request is tried again (up to `attempts` times, the load's backoff between them), and if the
    fault is still there, the load's own retries take it on, saying so."""
    import stripe

    from ingestion.stripe.helpers import backoff_seconds

    options = {"base_addresses": {"api": api_base}} if api_base else {}
    client = stripe.StripeClient(
        api_key, max_network_retries=0, http_client=stripe.RequestsClient(timeout=timeout), **options
    )
    target = f"STRIPE_API_BASE ({api_base})" if api_base else "Stripe (api.stripe.com)"
    fix = "fix STRIPE_API_BASE (or unset it to use Stripe)" if api_base else "check this machine's network"
    failures: list[str] = []
    started = time.monotonic()
    for attempt in range(1, attempts + 1):
        try:
            client.raw_request("get", "/v1/customers", limit=1)
        except stripe.AuthenticationError as exc:
            raise ConfigError(
                f"STRIPE_API_KEY was refused by {target} (401 invalid API key): fix STRIPE_API_KEY"
            ) from exc
        except stripe.PermissionError as exc:
            raise ConfigError(
                f"STRIPE_API_KEY may not read customers on {target} (403): give the restricted key read access"
            ) from exc
        except stripe.APIConnectionError as exc:
            reason = _connection_reason(str(exc), timeout)
            if reason == "unknown host":
                raise ConfigError(f"cannot reach {target}: unknown host: {fix}") from exc
            failures.append(reason)
        except stripe.StripeError:
            break  # 429, 5xx, a body cut short, an emulator without customers: the load retries those, saying so
        else:
            break
        if attempt < attempts:
            delay = backoff_seconds(attempt)
            logger.debug("checking %s: %s; trying again in %.1f s", target, reason, delay)
            time.sleep(delay)
    else:
        if set(failures) == {"connection refused"}:
            raise ConfigError(f"cannot reach {target}: connection refused on {attempts} attempts: {fix}")
        logger.warning(
            "checking %s: %s on %d attempts in %.0f s; loading anyway (the load retries each request)",
            target,
            _counted(failures),
            attempts,
            time.monotonic() - started,
        )
        return
    if failures:
        logger.warning("checking %s: %s, then an answer on attempt %d", target, _counted(failures), len(failures) + 1)


def _counted(reasons: list[str]) -> str:
    """["connection reset", "connection reset", "no answer within 8 s"] -> "connection reset (2), no answer ..." """
    counts = {reason: reasons.count(reason) for reason in reasons}
    return ", ".join(f"{reason} ({n})" if n > 1 else reason for reason, n in counts.items())


def _connection_reason(message: str, timeout: float) -> str:
    lowered = message.lower()
    if "refused" in lowered:
        return "connection refused"
    if "reset" in lowered:
        return "connection reset"
    if "timed out" in lowered or "timeout" in lowered:
        return f"no answer within {timeout:.0f} s"
    if "temporary failure in name resolution" in lowered:
        return "name lookup failed for now"
    if "name or service not known" in lowered or "nodename nor servname" in lowered or "resolve" in lowered:
        return "unknown host"
    if "aborted" in lowered or "disconnected" in lowered:
        return "connection closed without an answer"
    return "connection failed"
