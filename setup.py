"""What pyproject.toml cannot say: the wheel carries the dbt project and dagster.yaml, which live at the top of
the repository beside the packages, as package data of saas_metrics (`saas_metrics/project/`). An installed
package finds them there (saas_metrics/config.py, PROJECT_DIR); a checkout or an editable install reads its own."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHIPPED = ("dbt_project", "dagster.yaml")
# what dbt writes into its project (and this repository's tests into the checkout): never shipped
NOT_SHIPPED = shutil.ignore_patterns("target", "logs", "dbt_packages", ".user.yml", "__pycache__")


class BuildPyWithProject(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        project = Path(self.build_lib) / "saas_metrics" / "project"
        shutil.rmtree(project, ignore_errors=True)
        project.mkdir(parents=True)
        for name in SHIPPED:
            source = ROOT / name
            if source.is_dir():
                shutil.copytree(source, project / name, ignore=NOT_SHIPPED)
            else:
                shutil.copy2(source, project / name)


setup(cmdclass={"build_py": BuildPyWithProject})
