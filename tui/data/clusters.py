"""Which clusters the TUI shows: kubeconfig/context pairs, or named kubeconfigs with roles."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from kubernetes import client, config

DEFAULT_KUBECONFIG = Path("~/.kube/config")
POOL_SIZE = 16  # one connection per watched kind, plus room for actions


class ClusterConfigError(ValueError):
    """The clusters cannot be worked out; the message names the file or option."""


@dataclass(frozen=True)
class ClusterConfig:
    """One cluster to watch: its name in the TUI, how to reach it, its role if known."""

    name: str
    kubeconfig: Path | None
    context: str | None = None
    role: str = ""

    def api_client(self) -> client.ApiClient:
        """A client of its own (the watches' retries are theirs: no hidden urllib3 retries)."""
        configuration = client.Configuration()
        try:
            config.load_kube_config(
                config_file=str(self.kubeconfig) if self.kubeconfig else None,
                context=self.context,
                client_configuration=configuration,
                persist_config=False,
            )
        except (config.ConfigException, OSError, yaml.YAMLError) as exc:
            where = self.kubeconfig or "the default kubeconfig"
            raise ClusterConfigError(f"cluster {self.name}: kubeconfig {where}: {exc}") from exc
        configuration.retries = False
        configuration.connection_pool_maxsize = POOL_SIZE
        return client.ApiClient(configuration)


def _default_kubeconfig() -> Path:
    configured = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    return Path(configured) if configured else DEFAULT_KUBECONFIG.expanduser()


def _current_context(kubeconfig: Path) -> str:
    try:
        loaded = yaml.safe_load(kubeconfig.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ClusterConfigError(f"kubeconfig {kubeconfig}: cannot read it: {exc}") from exc
    if not isinstance(loaded, dict) or not loaded.get("current-context"):
        raise ClusterConfigError(f"kubeconfig {kubeconfig}: no current-context; pass --context")
    return str(loaded["current-context"])


def clusters_from_options(
    kubeconfigs: Sequence[Path], contexts: Sequence[str]
) -> list[ClusterConfig]:
    """Clusters from repeated --kubeconfig/--context: pairs when both are given as often,
    every context of one kubeconfig, or the current context of each kubeconfig."""
    files = list(kubeconfigs) or [_default_kubeconfig()]
    if contexts and len(files) == 1:
        pairs: list[tuple[Path, str | None]] = [(files[0], context) for context in contexts]
    elif contexts and len(files) == len(contexts):
        pairs = list(zip(files, contexts, strict=True))
    elif contexts:
        raise ClusterConfigError(
            f"{len(files)} --kubeconfig and {len(contexts)} --context: give one kubeconfig "
            "with several contexts, or as many contexts as kubeconfigs"
        )
    else:
        pairs = [(file, None) for file in files]
    clusters: list[ClusterConfig] = []
    taken: set[str] = set()
    for file, context in pairs:
        path = file.expanduser()
        if not path.is_file():
            raise ClusterConfigError(f"kubeconfig {file}: no such file")
        name = context or _current_context(path)
        unique, suffix = name, 2
        while unique in taken:
            unique, suffix = f"{name}-{suffix}", suffix + 1
        taken.add(unique)
        clusters.append(ClusterConfig(unique, path, context))
    return clusters


def clusters_by_role(named: Iterable[tuple[str, Path, str]]) -> list[ClusterConfig]:
    """Clusters given as (name, kubeconfig, role), e.g. a testbed's: providers first, by name."""
    return [
        ClusterConfig(name, kubeconfig, None, role)
        for name, kubeconfig, role in sorted(named, key=lambda c: (c[2] != "provider", c[0]))
    ]
