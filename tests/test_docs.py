"""The docs point where they say: every `METRICS.md "Section"` cited anywhere in the project is a heading of
METRICS.md, and every mart is in the README's catalogue."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# `METRICS.md "Section"`, also when a comment wraps between the two (`METRICS.md` then `-- "Section"`)
REFERENCE = re.compile(r'METRICS\.md\s*(?:(?:--|#)\s*)?"([^"\n]+)"')
TEXT_SUFFIXES = {".py", ".sql", ".yml", ".yaml", ".md", ".toml", ".txt"}


def tracked_text_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    paths = [ROOT / name for name in out.splitlines()]
    this = Path(__file__).resolve()  # its examples are not references
    return [path for path in paths if path.suffix in TEXT_SUFFIXES and path.is_file() and path != this]


def metrics_sections() -> set[str]:
    lines = (ROOT / "METRICS.md").read_text().splitlines()
    return {line.lstrip("#").strip() for line in lines if line.startswith("#")}


def test_the_reference_pattern_reads_wrapped_comments():
    text = '-- The largest (METRICS.md\n-- "Revenue concentration"). And METRICS.md "SaaS KPIs".'
    assert REFERENCE.findall(text) == ["Revenue concentration", "SaaS KPIs"]


def test_every_metrics_reference_names_a_section():
    sections = metrics_sections()
    cited: dict[str, list[str]] = {}
    for path in tracked_text_files():
        for name in REFERENCE.findall(path.read_text(errors="replace")):
            cited.setdefault(name, []).append(str(path.relative_to(ROOT)))
    assert len(cited) > 10, "almost no reference found: the pattern is wrong"
    missing = {name: files for name, files in cited.items() if name not in sections}
    assert missing == {}


def test_the_readme_catalogue_lists_every_mart():
    readme = (ROOT / "README.md").read_text()
    marts = sorted(path.stem for path in (ROOT / "dbt_project/models/marts").rglob("*.sql"))
    assert len(marts) > 20
    missing = [name for name in marts if f"| `{name}` |" not in readme]
    assert missing == []


README_REFERENCE = re.compile(r'README\s*(?:(?:--|#)\s*)?"([^"\n]+)"')


def test_every_readme_reference_names_a_section():
    """Code and docs that cite `README "Section"` point at a heading the README has."""
    sections = {
        line.lstrip("#").strip() for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("#")
    }
    cited: dict[str, set[str]] = {}
    for folder in ("saas_metrics", "ingestion", "orchestration", "dbt_project/models", "dbt_project/macros", "bench"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in (".py", ".sql", ".yml", ".md"):
                for name in README_REFERENCE.findall(path.read_text()):
                    cited.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    assert len(cited) >= 3
    # a heading may add a parenthesis: "BI tools" is "BI tools (Metabase and others)"
    missing = {
        name: files
        for name, files in cited.items()
        if not any(s == name or s.startswith(name + " (") for s in sections)
    }
    assert missing == {}


def test_the_column_index_is_what_the_manifest_gives():
    """METRICS.md "Column index" is written by `python -m saas_metrics.column_index` from the dbt manifest: a
    column added, moved or given another section without writing it again fails here."""
    from saas_metrics import column_index

    committed = (ROOT / "METRICS.md").read_text()
    assert column_index.with_index(committed, column_index.render(column_index.current_manifest())) == committed, (
        "the column index differs from the manifest: run python -m saas_metrics.column_index"
    )


def test_the_column_index_names_every_mart_column_with_its_rule_and_model():
    # a newcomer finds any mart column in METRICS.md "Column index": the section of its rule (a heading
    # of METRICS.md: a `metrics_section` meta must name one) and the model computing it (a file that exists)
    import yaml

    metrics = (ROOT / "METRICS.md").read_text()
    index = metrics[metrics.index("# Column index") :]
    entries = {block.split("`", 1)[0]: block for block in index.split("### `")[1:]}
    sections = metrics_sections()
    columns = 0
    for models_yml in (ROOT / "dbt_project/models/marts").rglob("_*__models.yml"):
        for model in yaml.safe_load(models_yml.read_text())["models"]:
            entry = entries.get(model["name"])
            assert entry is not None, f"{model['name']} is not in the column index"
            for path in re.findall(r"`((?:marts|intermediate)/[^`]+\.(?:sql|yml))`", entry):
                assert (ROOT / "dbt_project/models" / path).is_file(), path
            assert f"`{models_yml.parent.relative_to(ROOT / 'dbt_project/models')}/{model['name']}.sql`" in entry
            listed = {}
            for section, names in re.findall(r'^- "([^"]+)": (.+)$', entry, flags=re.M):
                assert section in sections, f"{model['name']}: no section {section!r}"
                listed.update({name: section for name in re.findall(r"`([^`]+)`", names)})
            for column in model["columns"]:
                columns += 1
                assert column["name"] in listed, f"{model['name']}.{column['name']} is not in the column index"
    assert columns > 250


def _anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lowercase, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_links_between_the_readme_and_docs_reach_a_file_and_heading():
    """The README links to docs/operating.md and docs/benchmarks.md by section; a heading renamed there
    (or here) breaks no link silently."""
    link = re.compile(r"\]\(((?!https?:)[^)#\s]*)(?:#([^)\s]+))?\)")
    checked = 0
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench/README.md"]:
        for target, anchor in link.findall(page.read_text()):
            path = (page.parent / target).resolve() if target else page
            assert path.exists(), f"{page.relative_to(ROOT)} links to {target}, which does not exist"
            if anchor and path.suffix == ".md":
                headings = {_anchor(line.lstrip("#")) for line in path.read_text().splitlines() if line.startswith("#")}
                assert anchor in headings, f"{page.relative_to(ROOT)} links to {target}#{anchor}: no such heading"
            checked += 1
    assert checked > 15
