"""The one command-line entry point, `fluidos-sensors`: the CLI's composition root.

Each part brings its own commands and this package mounts them; it is the only place that
imports every part and the testbed, and nothing of the project imports it (README,
"Architecture"). `python -m fluidos_sensors_cli` is the same command.
"""

from __future__ import annotations

import typer

from consumer.cli import consumer_app, requests_app
from consumer.cli import request as request_command
from fluidos_sensors.limits import allow_kubernetes_nesting
from mapper.cli import app as mapper_app
from resource_manager.cli import app as resource_manager_app
from resource_manager.cli import flavors_app
from router_manager.cli import app as router_manager_app
from router_manager.cli import routes_app
from testbed import paths as testbed_paths
from testbed.cli import app as testbed_app
from testbed.state import TestbedNotRunning, running_clusters
from tui.cli import tui_command
from tui.data.clusters import ClusterConfig, ClusterConfigError, clusters_by_role

app = typer.Typer(
    help="FLUIDOS sensor marketplace: edge BLE boards as Sensor flavors.", no_args_is_help=True
)


def _testbed_clusters() -> list[ClusterConfig]:
    """`tui --testbed`: the kubeconfigs the running testbed wrote, with their roles."""
    try:
        running = running_clusters(testbed_paths.state_dir())
    except TestbedNotRunning as exc:
        raise ClusterConfigError(str(exc)) from exc
    return clusters_by_role((c.name, c.kubeconfig, c.role) for c in running)


@app.callback()
def _every_command() -> None:
    # Every command may list or watch objects nested as deep as the API server stores them.
    allow_kubernetes_nesting()


app.add_typer(testbed_app, name="testbed")
app.add_typer(resource_manager_app, name="resource-manager")
app.add_typer(flavors_app, name="flavors")
app.add_typer(mapper_app, name="mapper")
app.add_typer(router_manager_app, name="router-manager")
app.add_typer(routes_app, name="routes")
app.command("request")(request_command)
app.add_typer(requests_app, name="requests")
app.add_typer(consumer_app, name="consumer")
app.command("tui")(tui_command(testbed_clusters=_testbed_clusters))
