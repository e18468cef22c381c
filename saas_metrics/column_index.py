"""METRICS.md "Column index", written from the dbt manifest so that it cannot drift from the models.

    python -m saas_metrics.column_index           # rewrite the index at the end of METRICS.md
    python -m saas_metrics.column_index --check   # exit 1 if the committed index differs (tests do this)

For every mart (a model under models/marts/): the model's file, the intermediate models it reads (its
direct dependencies) and the YAML describing its columns, all from the manifest; and each column under
the METRICS.md section that holds its rule: the model's `config: {meta: {metrics_section: ...}}`, or the
column's own where it differs (a currency column of a movements mart: "Currencies"). A new column is
listed under its model's section without anyone editing METRICS.md; the test fails until the index is
written again. dbt docs shows the same meta beside each column.
"""

from __future__ import annotations

import argparse
import json
import sys

from saas_metrics.config import DBT_PROJECT_DIR, PROJECT_DIR

METRICS_MD = PROJECT_DIR / "METRICS.md"
HEADING = "# Column index"
PREAMBLE = """Every column of every mart, with the section above that holds its rule and the model that computes it
(paths under `dbt_project/models/`; the YAML beside each mart describes every column). Written by
`python -m saas_metrics.column_index` from the dbt manifest: each mart's `metrics_section` meta, and a
column's own where it differs; `tests/test_docs.py` fails when this index is not what the manifest gives.
The forecast and the churn model's tables are written by Python: see "MRR forecast" and "Churn prediction"."""


def _models_path(path: str) -> str:
    return path.removeprefix("models/")


def _section(meta: dict | None) -> str | None:
    return (meta or {}).get("metrics_section")


def render(manifest: dict) -> str:
    """The whole "Column index" section (from its heading to the end of the file) for `manifest`."""
    nodes = manifest["nodes"]
    marts = sorted(
        (node for node in nodes.values() if node["resource_type"] == "model" and node["fqn"][1:2] == ["marts"]),
        key=lambda node: node["original_file_path"],
    )
    blocks = [HEADING, PREAMBLE]
    for node in marts:
        default = _section(node["config"].get("meta"))
        if default is None:
            raise ValueError(f"{node['name']}: no config.meta.metrics_section in {node['patch_path']}")
        reads = sorted(
            _models_path(nodes[parent]["original_file_path"])
            for parent in node["depends_on"]["nodes"]
            if parent in nodes and nodes[parent]["fqn"][1:2] == ["intermediate"]
        )
        where = f"Computed in `{_models_path(node['original_file_path'])}`"
        if reads:
            where += ", reading " + ", ".join(f"`{path}`" for path in reads)
        yml = _models_path(node["patch_path"].split("://", 1)[-1])
        by_section: dict[str, list[str]] = {}
        for column in node["columns"].values():
            section = _section(column.get("config", {}).get("meta")) or _section(column.get("meta")) or default
            by_section.setdefault(section, []).append(column["name"])
        lines = [f"### `{node['name']}`", "", f"{where}; columns described in `{yml}`.", ""]
        lines += [
            f'- "{section}": ' + ", ".join(f"`{name}`" for name in names) for section, names in by_section.items()
        ]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def current_manifest() -> dict:
    """The project's manifest, parsed again when anything it depends on changed (saas_metrics.runtime)."""
    from saas_metrics.runtime import prepare_dbt

    prepare_dbt()
    return json.loads((DBT_PROJECT_DIR / "target" / "manifest.json").read_text())


def with_index(text: str, index: str) -> str:
    """METRICS.md's text with its "Column index" section (the last one) replaced by `index`."""
    at = text.index("\n" + HEADING + "\n") + 1
    return text[:at] + index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 if METRICS.md's index is not the manifest's")
    args = parser.parse_args(argv)
    text = METRICS_MD.read_text()
    wanted = with_index(text, render(current_manifest()))
    if args.check:
        if wanted != text:
            print("METRICS.md: the column index differs from the manifest; run python -m saas_metrics.column_index")
            return 1
        return 0
    METRICS_MD.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
