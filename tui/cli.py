"""`fluidos-sensors tui`: the terminal UI over one or more clusters.

The TUI knows no testbed: whoever mounts the command (the CLI's composition root,
`fluidos_sensors_cli`) hands it a function giving the testbed's clusters for `--testbed`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from fluidos_sensors.cli import fail
from tui.data.clusters import ClusterConfig, ClusterConfigError, clusters_from_options

TestbedClusters = Callable[[], list[ClusterConfig]]
"""The running testbed's clusters; raises ClusterConfigError when none runs."""


def _no_testbed() -> list[ClusterConfig]:
    raise ClusterConfigError("--testbed: this command was mounted without a testbed")


def tui_command(testbed_clusters: TestbedClusters = _no_testbed) -> Callable[..., None]:
    """The `tui` command, its `--testbed` answered by `testbed_clusters`."""

    def tui(
        kubeconfig: Annotated[
            list[Path] | None,
            typer.Option("--kubeconfig", help="A cluster's kubeconfig (repeat for several)."),
        ] = None,
        context: Annotated[
            list[str] | None,
            typer.Option(
                "--context", help="A kubeconfig context (repeat; pairs with --kubeconfig)."
            ),
        ] = None,
        testbed: Annotated[
            bool, typer.Option("--testbed", help="Every cluster of the running testbed.")
        ] = False,
        log_file: Annotated[
            Path | None, typer.Option("--log-file", help="Write debug logs here.")
        ] = None,
        demo: Annotated[
            bool,
            typer.Option("--demo", help="A fixed sample deployment, no cluster (read-only)."),
        ] = False,
    ) -> None:
        """Browse flavors, routes, requests and devices of several clusters, live."""
        from tui.app import SensorsApp
        from tui.data.store import Store
        from tui.data.watch import Watches

        if demo:
            from tui import sample

            SensorsApp(sample.fill(Store())).run()
            return

        clusters: list[ClusterConfig] = []
        try:
            if testbed:
                clusters += testbed_clusters()
            if kubeconfig or context or not testbed:
                clusters += clusters_from_options(kubeconfig or [], context or [])
            for cluster in clusters:
                cluster.api_client().close()  # a broken kubeconfig fails here, not in a thread
        except ClusterConfigError as exc:
            raise fail(str(exc)) from exc
        # Nothing may write to the terminal the TUI draws on: logs go to a file or nowhere.
        root = logging.getLogger()
        if log_file is not None:
            logging.basicConfig(filename=log_file, level=logging.DEBUG, force=True)
        else:
            root.handlers = [logging.NullHandler()]
        store = Store()
        SensorsApp(store, Watches(clusters, store)).run()

    return tui
