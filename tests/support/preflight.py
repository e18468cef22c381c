"""Refreshes that cannot work (issue 19, item 5), one per mistake an operator makes, with the line
`saas-metrics run` must end with. Shared by tests/test_operations.py (the line) and bench/preflight.py
(how long it takes to say it: a time is measured, never asserted)."""

from __future__ import annotations

import os

from tests.conftest import free_port

GOOD_KEY = "sk_test_the_right_one"

KINDS = (
    "bad api key",
    "unreachable api base",
    "wrong database password",
    "missing database",
    "closed port",
    "not postgresql",
)


def bad_settings(kind: str, good_db: str, password: str, stripe_url: str) -> tuple[dict, str]:
    """The settings of `kind` (DATABASE_URL, STRIPE_API_KEY, STRIPE_API_BASE) around a working warehouse
    `good_db` (whose password is `password`) and a Stripe-protocol server at `stripe_url` that accepts
    GOOD_KEY; and the text the one line must hold."""
    base = {"DATABASE_URL": good_db, "STRIPE_API_KEY": GOOD_KEY, "STRIPE_API_BASE": stripe_url}
    cases = {
        "bad api key": ({"STRIPE_API_KEY": "sk_test_revoked"}, "STRIPE_API_KEY was refused by STRIPE_API_BASE"),
        "unreachable api base": (
            {"STRIPE_API_BASE": f"http://127.0.0.1:{free_port()}"},
            "cannot reach STRIPE_API_BASE (http://127.0.0.1:",
        ),
        "wrong database password": (
            {"DATABASE_URL": good_db.replace(f":{password}@", ":not-the-password@")},
            "DATABASE_URL: PostgreSQL at 127.0.0.1:",
        ),
        "missing database": (
            {"DATABASE_URL": good_db.rsplit("/", 1)[0] + "/no_such_db"},
            "DATABASE_URL: database no_such_db does not exist",
        ),
        "closed port": (
            {"DATABASE_URL": f"postgresql://me:pw@127.0.0.1:{free_port()}/warehouse"},
            "DATABASE_URL: nothing accepts connections at 127.0.0.1:",
        ),
        "not postgresql": ({"DATABASE_URL": "mysql://me:pw@localhost/warehouse"}, "DATABASE_URL must be a postgresql"),
    }
    extra, message = cases[kind]
    return {**base, **extra}, message


def operator_env(home, settings: dict) -> dict:
    """This process's environment without its Stripe, Dagster or warehouse settings, with `settings` and a
    saas-metrics home of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "DAGSTER_", "DATABASE_URL"))}
    env.update(SAAS_METRICS_HOME=str(home), **settings)
    return env
