"""The repo's sweeps/ folder as the config group `sweep` (+sweep=lr_grid). Hydra maps a search-path folder's
sub-folders to groups, and sweeps/ holds its files directly (a `file://` entry would make each sweep a primary
config; the repo root would expose .venv/ to --help): this ConfigSource serves exactly the group `sweep`."""

from __future__ import annotations

import os
from typing import List, Optional

from hydra._internal.core_plugins.file_config_source import FileConfigSource
from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.object_type import ObjectType
from hydra.plugins.config_source import ConfigLoadError, ConfigResult
from hydra.plugins.search_path_plugin import SearchPathPlugin

GROUP = "sweep"


class SweepsConfigSource(FileConfigSource):
    """`sweep/<name>` -> `<sweeps dir>/<name>.yaml`; the root holds the one group and no configs."""

    @staticmethod
    def scheme() -> str:
        return "allconv-sweeps"

    @staticmethod
    def _name(config_path: str) -> Optional[str]:
        parts = config_path.strip("/").split("/")
        return parts[1] if len(parts) == 2 and parts[0] == GROUP else None

    def load_config(self, config_path: str) -> ConfigResult:
        if not self.is_config(config_path):
            raise ConfigLoadError(f"Config not found : {config_path} (in {self.path})")
        return super().load_config(self._name(config_path))

    def is_group(self, config_path: str) -> bool:
        return config_path.strip("/") in ("", GROUP) and os.path.isdir(self.path)

    def is_config(self, config_path: str) -> bool:
        name = self._name(config_path)
        return name is not None and super().is_config(name)

    def list(self, config_path: str, results_filter: Optional[ObjectType]) -> List[str]:
        where = config_path.strip("/")
        if where == "" and results_filter in (None, ObjectType.GROUP) and self.available():
            return [GROUP]
        if where == GROUP and results_filter in (None, ObjectType.CONFIG) and self.available():
            # _common.yaml (shared by the sweep files) loads by name but is not offered as a sweep
            return sorted(f[:-5] for f in os.listdir(self.path) if f.endswith(".yaml") and not f.startswith("_"))
        return []


class AllconvSweepsSearchPath(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        try:
            from allconv_sweep.config import register, sweeps_dir
            register()  # the schema and the ${allconv.*:} resolvers, in every Hydra app of this environment
            path = sweeps_dir()
        except (ImportError, FileNotFoundError):  # another app in this environment, or no sweeps/ shipped
            return
        search_path.append(provider="allconv_sweep", path=f"{SweepsConfigSource.scheme()}://{path}")
