"""orchestration/dagster_internals.py: every private Dagster name it uses exists in the installed Dagster and
takes the parameters passed to it, so that a Dagster upgrade that changes one fails here, naming it, instead
of in a refresh. The lists it checks are the calls' own keywords (read from the source, so they cannot drift)."""

from __future__ import annotations

import ast
import importlib
import inspect

import dagster
import pytest

from orchestration import dagster_internals as internals


def _parameters(obj) -> set[str]:
    fields = getattr(obj, "_fields", None)  # a NamedTuple takes its fields
    return set(fields) if fields else set(inspect.signature(obj).parameters)


@pytest.mark.parametrize(("module", "name"), [(m, n) for m, names in internals.USED.items() for n in names])
def test_each_private_name_used_exists_and_takes_its_parameters(module, name):
    obj = getattr(importlib.import_module(module), name, None)
    assert obj is not None, f"dagster {dagster.__version__} has no {module}.{name}"
    missing = set(internals.USED[module][name]) - _parameters(obj)
    assert not missing, f"dagster {dagster.__version__}: {module}.{name} takes no {sorted(missing)}"


def test_the_instance_and_the_code_location_take_the_keywords_passed():
    from dagster._core.instance import DagsterInstance
    from dagster._core.remote_representation.code_location import InProcessCodeLocation

    assert not set(internals.INSTANCE_CREATE_RUN) - _parameters(DagsterInstance.create_run)
    assert not set(internals.LOCATION_GET_EXECUTION_PLAN) - _parameters(InProcessCodeLocation.get_execution_plan)


def _keywords_of(call_name: str) -> list[str]:
    tree = ast.parse(inspect.getsource(internals))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == call_name:
            return [keyword.arg for keyword in node.keywords]
    raise AssertionError(f"no call of {call_name} in orchestration/dagster_internals.py")


def test_the_lists_checked_are_the_keywords_the_calls_pass():
    assert _keywords_of("create_run") == internals.INSTANCE_CREATE_RUN
    # get_execution_plan: two positional arguments (remote_job, run_config), then keywords
    assert ["remote_job", "run_config", *_keywords_of("get_execution_plan")] == internals.LOCATION_GET_EXECUTION_PLAN


def test_nothing_else_in_the_project_imports_dagster_internals():
    """Only this adapter (and tests simulating the UI) reach into dagster._core / dagster._utils."""
    from saas_metrics.config import PROJECT_DIR

    offenders = []
    for folder in ("orchestration", "saas_metrics", "ingestion"):
        for path in (PROJECT_DIR / folder).rglob("*.py"):
            if path.name == "dagster_internals.py":
                continue
            if "from dagster._" in path.read_text() or "import dagster._" in path.read_text():
                offenders.append(str(path.relative_to(PROJECT_DIR)))
    assert offenders == []
