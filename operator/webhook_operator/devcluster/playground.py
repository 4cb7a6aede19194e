"""`webhook-operator dev`: the one-command playground. A real local control plane, the
CRDs, the operator and the delivery service (SQLite), a sample app and endpoint pointing at
a built-in receiver that prints each delivery with its verified signature, and a first
event so the whole path is visible at once. Ctrl-C stops everything; running it again
starts afresh."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
from aiohttp import web
from kubernetes import client
from rich.console import Console

from webhook_operator.devcluster import binaries, install
from webhook_operator.devcluster.cluster import ClusterInfo, LocalCluster, free_port
from webhook_operator.devcluster.devstate import state_dir, state_file
from webhook_operator.devcluster.receiver import PrintingReceiver, secret_values

SAMPLE_APP = "billing"
SAMPLE_ENDPOINT = "local-receiver"


def sample_objects(receiver_url: str) -> list[dict[str, Any]]:
    app = {
        "apiVersion": "webhook-operator.dev/v1alpha1",
        "kind": "WebhookApp",
        "metadata": {"name": SAMPLE_APP, "namespace": "default"},
        "spec": {
            "description": "Sample app of the dev playground",
            "eventTypes": [
                {
                    "name": "invoice.paid",
                    "category": "Billing",
                    "schema": {
                        "type": "object",
                        "required": ["invoiceId"],
                        "properties": {
                            "invoiceId": {"type": "string"},
                            "amount": {"type": "integer"},
                        },
                    },
                },
                {"name": "invoice.created", "category": "Billing"},
            ],
        },
    }
    endpoint = {
        "apiVersion": "webhook-operator.dev/v1alpha1",
        "kind": "WebhookEndpoint",
        "metadata": {"name": SAMPLE_ENDPOINT, "namespace": "default"},
        "spec": {
            "appRef": {"name": SAMPLE_APP},
            "url": receiver_url,
            "allowInsecureHttp": True,
            "description": "The playground's printing receiver",
            "events": ["invoice.*"],
            "retry": {"schedule": ["5s", "30s", "2m"]},
        },
    }
    return [app, endpoint]


@dataclass
class Playground:
    console: Console
    children: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def step(self, message: str) -> None:
        self.console.print(f"[dim]•[/dim] {message}")

    # -- start -----------------------------------------------------------------------------

    def binaries(self) -> binaries.ControlPlaneBinaries:
        with self.console.status("looking for the control plane binaries") as status:

            def progress(message: str) -> None:
                status.update(message)

            found = binaries.resolve(progress)
            binaries.kubectl_binary()
        self.step(f"control plane: {found.origin}")
        return found

    def spawn(self, name: str, args: list[str], logs: Path) -> subprocess.Popen[bytes]:
        log = (logs / f"{name}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "webhook_operator", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        self.children.append(process)
        return process

    def stop_children(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in self.children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
        self.children.clear()

    def run(self) -> int:
        found = self.binaries()
        root = state_dir()
        shutil.rmtree(root, ignore_errors=True)  # a fresh playground every time
        (root / "logs").mkdir(parents=True)
        cluster = LocalCluster(workdir=root / "cluster", binaries=found)
        try:
            with self.console.status("starting etcd, kube-apiserver and kube-controller-manager"):
                info = cluster.start()
                install.install_crds(info.kubeconfig)
            self.step(f"control plane ready at {info.server}, CRDs installed")
            with contextlib.suppress(KeyboardInterrupt):
                asyncio.run(self.serve(info, root))
        finally:
            self.console.print("[dim]stopping…[/dim]")
            self.stop_children()
            cluster.stop()
            state_file().unlink(missing_ok=True)
        self.console.print("stopped")
        return 0

    async def serve(self, info: ClusterInfo, root: Path) -> None:
        api = install.api_client(info.kubeconfig)
        core = client.CoreV1Api(api)

        def lookup() -> list[str]:
            name = f"{SAMPLE_ENDPOINT}-signing-secret"
            data = core.read_namespaced_secret(name, "default").data or {}
            return secret_values({k: str(v) for k, v in data.items()})

        receiver = PrintingReceiver(self.console, lookup)
        receiver_port, delivery_port = free_port(), free_port()
        runner = web.AppRunner(receiver.app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", receiver_port).start()
        receiver_url = f"http://127.0.0.1:{receiver_port}/hooks"
        delivery_url = f"http://127.0.0.1:{delivery_port}"
        logs = root / "logs"
        self.spawn(
            "delivery",
            [
                "delivery",
                f"--kubeconfig={info.kubeconfig}",
                f"--store=sqlite:///{root / 'delivery.db'}",
                f"--listen=127.0.0.1:{delivery_port}",
                "--allow-cidr=127.0.0.1/32",
            ],
            logs,
        )
        self.spawn(
            "operator",
            [
                "controller",
                f"--kubeconfig={info.kubeconfig}",
                f"--delivery-url={delivery_url}",
                "--probe-host=127.0.0.1",
                f"--probe-port={free_port()}",
                "--lease-namespace=default",
            ],
            logs,
        )
        state_file().write_text(
            json.dumps({"deliveryUrl": delivery_url, "kubeconfig": str(info.kubeconfig)})
        )
        with self.console.status("starting the operator and the delivery service"):
            await self.wait_ready(delivery_url, logs)
            self.apply(info, sample_objects(receiver_url))
            await self.wait_endpoint_ready(api)
        self.step(f"operator and delivery service running (logs in {logs})")
        self.step(
            f"sample WebhookApp {SAMPLE_APP} and WebhookEndpoint {SAMPLE_ENDPOINT} → {receiver_url}"
        )
        await self.first_event(info, delivery_url)
        self.hints(info, delivery_url)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        while not stop.is_set():
            dead = [c for c in self.children if c.poll() is not None]
            if dead:
                self.console.print(f"[red]a process exited; see the logs in {logs}[/red]")
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
        await runner.cleanup()
        cast(Any, api).close()

    async def wait_ready(self, delivery_url: str, logs: Path, limit: float = 90.0) -> None:
        deadline = time.monotonic() + limit
        async with httpx.AsyncClient(timeout=2.0) as http:
            while time.monotonic() < deadline:
                if any(c.poll() is not None for c in self.children):
                    raise RuntimeError(f"a process exited while starting; see {logs}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{delivery_url}/readyz")).status_code == 200:
                        return
                await asyncio.sleep(0.3)
        raise RuntimeError(f"the delivery service did not become ready; see {logs}")

    def apply(self, info: ClusterInfo, objects: list[dict[str, Any]]) -> None:
        for obj in objects:
            subprocess.run(
                [
                    str(binaries.kubectl_binary()),
                    f"--kubeconfig={info.kubeconfig}",
                    "apply",
                    "-f",
                    "-",
                ],
                input=json.dumps(obj).encode(),
                check=True,
                capture_output=True,
            )

    async def wait_endpoint_ready(self, api: client.ApiClient, limit: float = 60.0) -> None:
        custom = client.CustomObjectsApi(api)
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            obj: Any = await asyncio.to_thread(
                custom.get_namespaced_custom_object,
                "webhook-operator.dev",
                "v1alpha1",
                "default",
                "webhookendpoints",
                SAMPLE_ENDPOINT,
            )
            conditions = (obj.get("status") or {}).get("conditions") or []
            if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
                return
            await asyncio.sleep(0.3)
        raise RuntimeError("the sample endpoint did not become Ready")

    async def first_event(self, info: ClusterInfo, delivery_url: str) -> None:
        async with httpx.AsyncClient(timeout=10.0) as http:
            response = await http.post(
                f"{delivery_url}/v1/namespaces/default/apps/{SAMPLE_APP}/events",
                json={"type": "invoice.paid", "data": {"invoiceId": "in_welcome", "amount": 4200}},
                headers={"Authorization": f"Bearer {info.token}"},
            )
        if response.status_code == 202:
            self.step("emitted a first invoice.paid event; the receiver prints it below")
        else:
            self.console.print(f"[yellow]first event refused: {response.text}[/yellow]")

    def hints(self, info: ClusterInfo, delivery_url: str) -> None:
        venv_bin = Path(sys.executable).parent
        on_path = shutil.which("kubectl") == str(venv_bin / "kubectl")
        kubectl = "kubectl" if on_path else str(venv_bin / "kubectl")
        lines = [
            "",
            "[bold]Ready.[/bold] In another terminal:",
            f"  export KUBECONFIG={info.kubeconfig}",
        ]
        if not on_path:
            lines.append(f"  export PATH={venv_bin}:$PATH   # kubectl {kubectl} and the plugin")
            kubectl = "kubectl"
        lines += [
            f"  {kubectl} get webhooks",
            f"  {kubectl} webhooks emit {SAMPLE_APP} invoice.paid"
            + """ --data '{"invoiceId": "in_2"}'""",
            f"  {kubectl} webhooks deliveries --endpoint {SAMPLE_ENDPOINT}",
            f"  {kubectl} annotate webhookendpoint {SAMPLE_ENDPOINT} "
            "webhook-operator.dev/rotate-secret=$(date +%s) --overwrite",
            "  or with curl:",
            f"  curl -X POST {delivery_url}/v1/namespaces/default/apps/{SAMPLE_APP}/events \\",
            f'    -H "Authorization: Bearer $({kubectl} create token default)" \\',
            '    -d \'{"type": "invoice.paid", "data": {"invoiceId": "in_3"}}\'',
            "    (grant the default ServiceAccount the emit verb first:",
            f"     {kubectl} create role emit --verb=emit"
            + " --resource=webhookapps.webhook-operator.dev",
            f"     {kubectl} create rolebinding emit --role=emit"
            + " --serviceaccount=default:default)",
            "",
            "Ctrl-C stops everything.",
        ]
        for line in lines:
            self.console.print(line, highlight=False)


def main(console: Console) -> int:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return Playground(console).run()
