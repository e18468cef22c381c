"""Dagster definitions of saas-metrics: `orchestration.definitions.defs`."""
