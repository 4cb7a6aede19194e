"""The `webhook-operator` command: entry points for the operator, the delivery service
and the local tooling grow here as subcommands."""

from __future__ import annotations

import functools
import signal
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from rich.console import Console

from webhook_operator import __version__

# The local-tooling modules (devcluster) are imported inside their commands: the operator
# and the delivery service start through this module too, and should not carry the
# synchronous Kubernetes client they never use (about 30 MB resident).

app = typer.Typer(
    help="Webhook delivery as Kubernetes custom resources.",
    no_args_is_help=True,
    add_completion=False,
)
cluster_app = typer.Typer(
    help="A real local control plane (etcd, kube-apiserver, "
    "kube-controller-manager) for development and tests.",
    no_args_is_help=True,
)
app.add_typer(cluster_app, name="cluster")


def hide_generated_clients() -> None:
    """kopf imports both generated Kubernetes clients when they are installed (about 46 MB
    resident together) only to recognise their model objects, which the operator never
    hands it: its calls go through webhook_operator.kube_rest. Marked absent before kopf is
    first imported, they are taken for not installed. Only in the operator's process."""
    import sys

    for name in ("kubernetes", "kubernetes_asyncio"):
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


@functools.cache
def _console(stderr: bool = True) -> Console:
    # rich (about 40 modules) only for the commands that print: the long-running
    # services never load it.
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _progress(message: str) -> None:
    _console().print(f"[dim]…[/dim] {message}")


@app.command()
def version() -> None:
    """Print the version."""
    print(__version__)


@app.command()
def crds(
    output_dir: Annotated[
        Path | None, typer.Option(help="Write one file per CRD here instead of to stdout.")
    ] = None,
    reference: Annotated[
        Path | None, typer.Option(help="Also write the Markdown CRD reference to this file.")
    ] = None,
) -> None:
    """Print (or write) the CustomResourceDefinitions generated from the API models."""
    from webhook_operator import crdgen

    if output_dir is None:
        print("---\n".join(crdgen.rendered_files().values()), end="")
        return
    for path in crdgen.write(output_dir):
        _console().print(f"wrote {path}")
    if reference is not None:
        from webhook_operator import crdreference

        reference.write_text(crdreference.render())
        _console().print(f"wrote {reference}")


@app.command()
def controller(
    kubeconfig: Annotated[
        str | None, typer.Option(help="Kubeconfig to use (default: in-cluster, else KUBECONFIG).")
    ] = None,
    namespace: Annotated[
        list[str] | None,
        typer.Option("--namespace", "-n", help="Watch only these namespaces (repeatable)."),
    ] = None,
    lease_namespace: Annotated[
        str, typer.Option(envvar="POD_NAMESPACE", help="Namespace of the leader-election Lease.")
    ] = "default",
    lease_name: Annotated[str, typer.Option(help="Name of the leader-election Lease.")] = (
        "webhook-operator"
    ),
    lease_duration: Annotated[
        int, typer.Option(help="Seconds after which a standby takes over an unrenewed lease.")
    ] = 15,
    probe_port: Annotated[int, typer.Option(help="Port of /healthz and /readyz.")] = 8081,
    probe_host: Annotated[str, typer.Option(help="Address the probes listen on.")] = "0.0.0.0",
    status_interval: Annotated[
        float,
        typer.Option(
            help="Minimum seconds between two status writes of one object for delivery "
            "results (health, counts, times); spec changes and conditions are written at once."
        ),
    ] = 10.0,
    delivery_url: Annotated[
        str | None,
        typer.Option(
            envvar="WEBHOOK_OPERATOR_DELIVERY_URL",
            help="Base URL of the delivery service, whose results fill endpoint health.",
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the operator (control plane) for WebhookApps and WebhookEndpoints."""
    import asyncio
    import logging

    hide_generated_clients()
    from webhook_operator.controller.runner import ControllerSettings, run

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not verbose:
        # kopf narrates every watch, httpx every results poll: useful only when debugging.
        for noisy in ("kopf", "httpx"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    settings = ControllerSettings(
        kubeconfig=kubeconfig,
        namespaces=list(namespace or []),
        lease_namespace=lease_namespace,
        lease_name=lease_name,
        lease_duration=lease_duration,
        probe_host=probe_host,
        probe_port=probe_port,
        status_interval=status_interval,
        delivery_url=delivery_url,
    )
    raise typer.Exit(asyncio.run(run(settings)))


@app.command()
def delivery(
    store: Annotated[
        str,
        typer.Option(
            envvar="WEBHOOK_OPERATOR_STORE",
            help="sqlite:///path/file.db (one replica) or postgresql://... (several).",
        ),
    ] = "sqlite:///webhook-operator.db",
    kubeconfig: Annotated[
        str | None, typer.Option(help="Kubeconfig to use (default: in-cluster, else KUBECONFIG).")
    ] = None,
    listen: Annotated[str, typer.Option(help="host:port of the HTTP API.")] = "0.0.0.0:8080",
    allow_cidr: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-cidr",
            envvar="WEBHOOK_OPERATOR_ALLOW_CIDRS",
            help="Let deliveries reach these non-public networks (repeatable), e.g. "
            "10.0.0.0/8 for in-cluster receivers. Everything non-public is refused otherwise.",
        ),
    ] = None,
    metrics_listen: Annotated[
        str,
        typer.Option(
            help="host:port of /metrics, apart from the API since it names every tenant's "
            'objects ("off": not served).'
        ),
    ] = "0.0.0.0:9090",
    https_proxy: Annotated[
        str | None,
        typer.Option(
            help="Egress proxy for https URLs, http://host:port, with user:password@ before "
            "the host if it needs them (default: https_proxy or HTTPS_PROXY; empty: none)."
        ),
    ] = None,
    http_proxy: Annotated[
        str | None,
        typer.Option(help="Egress proxy for http URLs (default: http_proxy or HTTP_PROXY)."),
    ] = None,
    no_proxy: Annotated[
        str | None,
        typer.Option(
            help="Hosts, domains, IPs and CIDRs reached without the proxy, comma-separated "
            "(default: no_proxy or NO_PROXY)."
        ),
    ] = None,
    max_body: Annotated[int, typer.Option(help="Largest event body accepted, bytes.")] = 256 * 1024,
    header_timeout: Annotated[
        float,
        typer.Option(
            help="Seconds a client has to finish its request headers (from connecting or from "
            "its previous response); idle connections close then too."
        ),
    ] = 15.0,
    body_timeout: Annotated[
        float, typer.Option(help="Seconds a client has to send a whole request body.")
    ] = 30.0,
    retention: Annotated[
        str, typer.Option(help="How long events and their delivery log are kept.")
    ] = "720h",
    lease_seconds: Annotated[
        float,
        typer.Option(
            help="How long a claim holds when its owner cannot be shown to be gone; crashes "
            "and restarts give claims back within seconds."
        ),
    ] = 120.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the delivery service: ingest API, delivery workers, history and replay."""
    import asyncio
    import logging
    import os

    from webhook_operator.delivery.dispatcher import DispatcherSettings
    from webhook_operator.delivery.egress_proxy import ProxyConfigError, from_environment
    from webhook_operator.delivery.service import ServiceSettings, serve
    from webhook_operator.durations import parse_duration

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    host, _, port = listen.rpartition(":")
    metrics_host, metrics_port = "", None
    if metrics_listen != "off":
        metrics_host, _, raw_port = metrics_listen.rpartition(":")
        metrics_port = int(raw_port)
    cidrs = _cidrs(allow_cidr)
    try:
        # The one place the proxy variables are read; the client is handed the result.
        proxy = from_environment(os.environ, https_proxy, http_proxy, no_proxy)
    except ProxyConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    settings = ServiceSettings(
        store_url=store,
        kubeconfig=kubeconfig,
        host=host or "0.0.0.0",
        port=int(port),
        allow_cidrs=tuple(cidrs),
        proxy=proxy,
        max_body=max_body,
        header_timeout=header_timeout,
        body_timeout=body_timeout,
        metrics_host=metrics_host or "0.0.0.0",
        metrics_port=metrics_port,
        retention_seconds=parse_duration(retention).total_seconds(),
    )
    settings.dispatcher = DispatcherSettings(owner=settings.owner, lease_seconds=lease_seconds)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(settings))


@app.command()
def portal(
    kubeconfig: Annotated[
        str | None, typer.Option(help="Kubeconfig to use (default: in-cluster, else KUBECONFIG).")
    ] = None,
    listen: Annotated[str, typer.Option(help="host:port of the portal's API.")] = "0.0.0.0:8090",
    delivery_url: Annotated[
        str,
        typer.Option(
            envvar="WEBHOOK_OPERATOR_DELIVERY_URL",
            help="Base URL of the delivery service (deliveries, pings, resends, replays).",
        ),
    ] = "http://webhook-operator-delivery:8080",
    public_url: Annotated[
        str | None,
        typer.Option(
            envvar="WEBHOOK_OPERATOR_PORTAL_URL",
            help="Where customers reach the portal, the base of each ticket's portalUrl "
            "(default: the scheme and host the ticket was requested on).",
        ),
    ] = None,
    allow_cidr: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-cidr",
            envvar="WEBHOOK_OPERATOR_ALLOW_CIDRS",
            help="Non-public networks customers' URLs may point to (repeatable); give the "
            "delivery service the same list.",
        ),
    ] = None,
    key_namespace: Annotated[
        str,
        typer.Option(envvar="POD_NAMESPACE", help="Namespace of the ticket key Secret."),
    ] = "default",
    key_secret: Annotated[
        str,
        typer.Option(help="Name of the Secret holding the ticket signing key (created if absent)."),
    ] = "webhook-operator-portal-ticket-key",
    default_ttl: Annotated[str, typer.Option(help="Ticket lifetime when none is asked for.")] = (
        "15m"
    ),
    max_ttl: Annotated[str, typer.Option(help="Longest ticket lifetime that may be asked for.")] = (
        "1h"
    ),
    ticket_rate: Annotated[
        float, typer.Option(help="Requests per second one ticket may make (burst twice that).")
    ] = 10.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the portal: access tickets for the platform's backend and the tenant API its
    customers use to manage their own endpoints."""
    import asyncio
    import logging

    from webhook_operator.durations import parse_duration
    from webhook_operator.portal.server import serve
    from webhook_operator.portal.settings import PortalSettings

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    host, _, port = listen.rpartition(":")
    settings = PortalSettings(
        kubeconfig=kubeconfig,
        host=host or "0.0.0.0",
        port=int(port),
        delivery_url=delivery_url,
        public_url=public_url,
        allow_cidrs=tuple(_cidrs(allow_cidr)),
        key_namespace=key_namespace,
        key_secret=key_secret,
        default_ttl=parse_duration(default_ttl).total_seconds(),
        max_ttl=parse_duration(max_ttl).total_seconds(),
        ticket_rate=ticket_rate,
    )
    asyncio.run(serve(settings))


def _cidrs(values: list[str] | None) -> list[str]:
    """--allow-cidr values, each possibly a comma-separated list (as the env var is)."""
    return [c.strip() for value in values or [] for c in value.split(",") if c.strip()]


@app.command()
def dev() -> None:
    """Start the local playground: control plane, operator, delivery service, a sample app
    and endpoint with a receiver that prints each delivery. Ctrl-C stops everything."""
    from webhook_operator.devcluster import binaries as bins
    from webhook_operator.devcluster import cluster as cluster_mod
    from webhook_operator.devcluster import playground

    console = _console(stderr=False)
    try:
        code = playground.main(console)
    except (bins.BinaryError, cluster_mod.ClusterStartError, RuntimeError, TimeoutError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    raise typer.Exit(code)


@cluster_app.command("build")
def cluster_build(
    helm: Annotated[bool, typer.Option(help="Also build helm.")] = True,
    promtool: Annotated[
        bool, typer.Option(help="Also build promtool (the chart's alert rule tests).")
    ] = True,
) -> None:
    """Build (or find in the cache) the control-plane binaries, kubectl, helm and promtool."""
    from webhook_operator.devcluster import binaries as bins

    try:
        found = bins.resolve(_progress)
        _console().print(f"control plane: {found.origin}")
        _console().print(f"kubectl: {bins.kubectl_binary()}")
        if helm:
            _console().print(f"helm: {bins.helm_binary(_progress)}")
        if promtool:
            _console().print(f"promtool: {bins.promtool_binary(_progress)}")
    except bins.BinaryError as exc:
        _console().print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc


@cluster_app.command("image")
def cluster_image() -> None:
    """Build the image from the Dockerfile (cached by source hash) as a docker-archive."""
    from webhook_operator.devcluster import binaries as bins
    from webhook_operator.devcluster import images

    try:
        archive = images.build_image(_progress)
    except bins.BinaryError as exc:
        _console().print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    _console().print(f"image: {images.archive_image(archive)}")
    _console().print(f"archive: {archive}")


@cluster_app.command("start", help="Same as `cluster up`.")
@cluster_app.command("up")
def cluster_up(
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            help="Where data, keys, logs and the kubeconfig go "
            "(default: a new temporary directory).",
        ),
    ] = None,
    node: Annotated[
        bool,
        typer.Option(
            "--node",
            help="Also run a node (containerd, kubelet, kube-scheduler; needs root and "
            "`bash .ci/install-node`) with the image built from the Dockerfile loaded, so "
            "`helm install` runs real Pods.",
        ),
    ] = False,
) -> None:
    """Start a local control plane with the CRDs installed; Ctrl-C stops it."""
    from webhook_operator.devcluster import binaries as bins
    from webhook_operator.devcluster import cluster as cluster_mod
    from webhook_operator.devcluster import install

    workdir = directory or Path(tempfile.mkdtemp(prefix="webhook-operator-cluster-"))
    try:
        found = bins.resolve(_progress)
    except bins.BinaryError as exc:
        _console().print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    local = cluster_mod.LocalCluster(workdir=workdir, binaries=found, node=node)
    image = ""
    if node:
        from webhook_operator.devcluster import images

        try:
            archive = images.build_image(_progress)
            image = images.archive_image(archive)
        except bins.BinaryError as exc:
            _console().print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from exc
    _progress("starting etcd, kube-apiserver and kube-controller-manager")
    try:
        info = local.start()
        install.install_crds(info.kubeconfig)
        if local.runtime is not None:
            local.runtime.import_image(archive)
    except (cluster_mod.ClusterStartError, TimeoutError, RuntimeError) as exc:
        local.stop()
        _console().print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    _console().print(f"[green]ready[/green]: {info.server}, CRDs installed")
    _console().print(f"  export KUBECONFIG={info.kubeconfig}")
    _console().print("  kubectl get webhooks -A")
    if image:
        _console().print(f"  node 127.0.0.1 ready, image {image} loaded (imagePullPolicy: Never)")
    _console().print(f"  logs in {workdir / 'logs'}; Ctrl-C stops the cluster")
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.wait(1.0):
        dead = local.dead_children()
        if dead:
            _console().print(f"[red]error:[/red] {', '.join(dead)} exited; see {workdir / 'logs'}")
            break
    _progress("stopping")
    local.stop()


def main() -> None:
    app()
