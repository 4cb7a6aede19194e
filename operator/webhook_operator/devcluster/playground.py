"""`webhook-operator dev`: the one-command playground. A real local control plane, the
CRDs, the operator, the delivery service (SQLite) and the portal, a sample app and endpoint
pointing at a built-in receiver that prints each delivery with its verified signature, a
first event so the whole path is visible at once, and a portal URL with a manage ticket for
the sample app, issued the way a platform's backend would (see `portal_access`).

Its lifetime rules, because a playground left running unseen holds ports, CPU and a state
directory the next one wipes:
- Ctrl-C (or SIGTERM, or the terminal closing) stops everything and removes the state file;
  so does losing the output (`| tee` killed by the same Ctrl-C, see `output`).
- Every child dies with the playground even when it cannot clean up (SIGKILL, a crash):
  see `lifetime`.
- One playground per state directory: a second one is refused, naming the first, before
  it touches anything (see `devstate`).
- A crashed operator, delivery service or portal is restarted in place, saying so, with
  backoff and a bound (see `restarts`); the control plane dying is fatal, with its log.
  A restarted portal keeps its ticket key (a Secret), so tickets it issued keep working.
Running it again after a stop starts afresh."""

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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

import httpx
from aiohttp import web
from kubernetes import client
from rich.console import Console
from rich.markup import escape

from webhook_operator.devcluster import binaries, devstate, install, portal_access
from webhook_operator.devcluster.cluster import ClusterInfo, LocalCluster, free_port
from webhook_operator.devcluster.lifetime import die_with_parent
from webhook_operator.devcluster.output import SurvivingOutput
from webhook_operator.devcluster.receiver import PrintingReceiver, secret_values
from webhook_operator.devcluster.restarts import RestartPolicy, Restarts, describe_exit

# What stops the playground: Ctrl-C, `kill`, the terminal closing. A signal ignored when
# the playground starts stays ignored (`nohup` ignores SIGHUP, a shell's `&` SIGINT).
STOP_SIGNALS = [
    sig
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    if signal.getsignal(sig) is not signal.SIG_IGN
]

SAMPLE_APP = "billing"
SAMPLE_ENDPOINT = "local-receiver"
SAMPLE_NAMESPACE = "default"
# In the sample namespace, next to the app it opens (the playground has no release namespace).
PORTAL_KEY_SECRET = "webhook-operator-portal-ticket-key"


def sample_objects(receiver_url: str) -> list[dict[str, Any]]:
    app = {
        "apiVersion": "webhook-operator.dev/v1alpha1",
        "kind": "WebhookApp",
        "metadata": {"name": SAMPLE_APP, "namespace": SAMPLE_NAMESPACE},
        "spec": {
            "description": "Sample app of the dev playground",
            # The receiver you try endpoints with is plain http on 127.0.0.1.
            "portal": {"allowInsecureHttp": True, "displayName": "Billing (playground)"},
            "eventTypes": [
                {
                    "name": "invoice.paid",
                    "category": "Billing",
                    "description": "An invoice was paid in full.",
                    "schema": {
                        "type": "object",
                        "required": ["invoiceId"],
                        "properties": {
                            "invoiceId": {"type": "string"},
                            "amount": {"type": "integer"},
                        },
                    },
                },
                {
                    "name": "invoice.created",
                    "category": "Billing",
                    "description": "An invoice was issued to a customer.",
                },
            ],
        },
    }
    endpoint = {
        "apiVersion": "webhook-operator.dev/v1alpha1",
        "kind": "WebhookEndpoint",
        "metadata": {"name": SAMPLE_ENDPOINT, "namespace": SAMPLE_NAMESPACE},
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


def _tail(path: Path, lines: int) -> list[str]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]


@dataclass
class Service:
    """The operator, the delivery service or the portal: a child the playground restarts in
    place, with the same arguments, so its URL, port and data stay what the user was told."""

    name: str
    log_name: str
    args: list[str]
    logs: Path
    restarts: Restarts
    # Whether the process is doing its job again after a restart.
    back: Callable[[httpx.AsyncClient], Awaitable[bool]]
    process: subprocess.Popen[bytes] | None = None
    restart_at: float | None = None

    @property
    def log_path(self) -> Path:
        return self.logs / f"{self.log_name}.log"

    def start(self, now: float) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "webhook_operator", *self.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # Out of the terminal's process group: Ctrl-C reaches the playground, which
                # stops its children in order; and dead with the playground if it cannot.
                start_new_session=True,
                preexec_fn=die_with_parent(),
            )
        self.restarts.started(now)
        self.restart_at = None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def terminate(self) -> None:
        if self.alive():
            assert self.process is not None
            with contextlib.suppress(OSError):
                self.process.send_signal(signal.SIGTERM)

    def wait(self, grace: float) -> None:
        if self.process is None:
            return
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


async def _http_ok(http: httpx.AsyncClient, url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return (await http.get(url)).status_code == 200
    return False


async def _leading(http: httpx.AsyncClient, url: str) -> bool:
    """The operator's probe says which role it has: a restarted one waits as a standby
    until the Lease of the one that crashed expires."""
    with contextlib.suppress(httpx.HTTPError, ValueError):
        response = await http.get(url)
        return response.status_code == 200 and response.json().get("role") == "leader"
    return False


@dataclass
class Playground:
    console: Console
    output: SurvivingOutput | None = None
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    services: list[Service] = field(default_factory=list)
    # What `kubectl webhooks` and people read in state.json; rewritten whole on a change.
    state: dict[str, Any] = field(default_factory=dict)
    # When the portal ticket in the state file is renewed (monotonic); None: not issued.
    portal_renew_at: float | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def say(self, text: str, **options: Any) -> None:
        # While starting, a stop signal raises KeyboardInterrupt wherever the code is; in
        # the middle of rich's print that leaves the line in its buffer, printed again with
        # the next one. Held for the length of a print, the signal lands just after.
        _hold_stop_signals()
        try:
            self.console.print(text, **options)
        finally:
            _release_stop_signals()

    def step(self, message: str) -> None:
        self.say(f"[dim]•[/dim] {message}")

    def warn(self, message: str) -> None:
        self.say(f"[yellow]{escape(message)}[/yellow]")

    def fail(self, message: str) -> None:
        self.say(f"[red]{escape(message)}[/red]")

    # -- start and stop --------------------------------------------------------------------

    def binaries(self) -> binaries.ControlPlaneBinaries:
        with self.console.status("looking for the control plane binaries") as status:

            def progress(message: str) -> None:
                status.update(message)

            found = binaries.resolve(progress)
            binaries.kubectl_binary()
        self.step(f"control plane: {found.origin}")
        return found

    def run(self) -> int:
        root = devstate.state_dir()
        try:
            lock = devstate.lock(root)  # before anything else: a busy directory stays as is
        except devstate.PlaygroundBusy as exc:
            self.say(f"[red]error:[/red] {escape(str(exc))}")
            return 1
        _interrupt_on_stop_signals()
        cluster: LocalCluster | None = None
        code = 0
        try:
            found = self.binaries()
            try:
                lock.reset()  # a fresh playground every time
                (root / "logs").mkdir()
            except OSError as exc:
                raise devstate.StateDirError(f"cannot reset {root}: {exc}") from None
            cluster = LocalCluster(workdir=root / "cluster", binaries=found)
            with self.console.status("starting etcd, kube-apiserver and kube-controller-manager"):
                info = cluster.start()
                install.install_crds(info.kubeconfig)
            self.step(f"control plane ready at {info.server}, CRDs installed")
            # Held until `serve` runs: a Ctrl-C while asyncio builds its loop would surface
            # as a traceback from a half-made loop instead of a stop.
            _hold_stop_signals()
            code = asyncio.run(self.serve(info, root, cluster, lock))
        except KeyboardInterrupt:
            pass
        finally:
            # Nothing may cut the cleanup short now; a second Ctrl-C is not needed to hurry
            # it (the children would die with this process anyway, see `lifetime`).
            _ignore_stop_signals()
            _release_stop_signals()  # if `serve` never ran; pending ones are dropped
            lock.remove_state()  # first: `kubectl webhooks` must not find a dying playground
            self.say("[dim]stopping…[/dim]")
            try:
                self.stop_children()
            finally:
                try:
                    if cluster is not None:
                        cluster.stop()
                finally:
                    lock.release()
        self.say("stopped")
        return code

    def stop_children(self) -> None:
        for service in self.services:
            service.terminate()
        for service in self.services:
            service.wait(grace=15)
        self.services.clear()

    # -- serve -----------------------------------------------------------------------------

    async def serve(
        self, info: ClusterInfo, root: Path, cluster: LocalCluster, lock: devstate.StateLock
    ) -> int:
        # From here a stop signal cancels this task: the cancellation surfaces at an await,
        # never in the middle of a print or a child's start.
        loop = asyncio.get_running_loop()
        main = asyncio.current_task()
        assert main is not None
        stopping: list[int] = []

        def stop(sig: int) -> None:
            stopping.append(sig)
            main.cancel()

        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, stop, sig)
        _release_stop_signals()  # before any child starts: children inherit the mask
        api = install.api_client(info.kubeconfig)
        runner: web.AppRunner | None = None
        try:
            core = client.CoreV1Api(api)

            def lookup() -> list[str]:
                name = f"{SAMPLE_ENDPOINT}-signing-secret"
                # Called on the event loop: a hung apiserver must not freeze the playground.
                secret = core.read_namespaced_secret(
                    name, SAMPLE_NAMESPACE, _request_timeout=(3, 5)
                )
                data = secret.data or {}
                return secret_values({k: str(v) for k, v in data.items()})

            receiver = PrintingReceiver(self.console, lookup)
            receiver_port, delivery_port, portal_port = free_port(), free_port(), free_port()
            runner = web.AppRunner(receiver.app(), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", receiver_port).start()
            receiver_url = f"http://127.0.0.1:{receiver_port}/hooks"
            delivery_url = f"http://127.0.0.1:{delivery_port}"
            portal_base = f"http://127.0.0.1:{portal_port}"
            logs = root / "logs"
            self.start_services(info, root, delivery_url, delivery_port, portal_port)
            self.state = {
                "deliveryUrl": delivery_url,
                "kubeconfig": str(info.kubeconfig),
                "server": info.server,
                "receiverUrl": receiver_url,
                "pid": os.getpid(),
            }
            lock.write_state(self.state)
            with self.console.status("starting the operator, the delivery service and the portal"):
                await self.wait_ready([f"{delivery_url}/readyz", f"{portal_base}/readyz"])
                self.apply(
                    info,
                    sample_objects(receiver_url)
                    + portal_access.backend_objects(SAMPLE_NAMESPACE, SAMPLE_APP),
                )
                await self.wait_endpoint_ready(api)
            self.step(f"operator, delivery service and portal running (logs in {logs})")
            self.step(
                f"sample WebhookApp {SAMPLE_APP} and WebhookEndpoint {SAMPLE_ENDPOINT}"
                f" → {receiver_url}"
            )
            await self.first_event(info, delivery_url)
            portal_url = await self.open_portal(api, portal_base, lock)
            self.hints(info, delivery_url, portal_url)
            return await self.supervise(cluster, api, portal_base, lock)
        except asyncio.CancelledError:
            if not stopping:
                raise
            return 0
        finally:
            _ignore_stop_signals(loop)
            for task in self._tasks:
                task.cancel()
            if runner is not None:
                await runner.cleanup()
            cast(Any, api).close()

    def start_services(
        self,
        info: ClusterInfo,
        root: Path,
        delivery_url: str,
        delivery_port: int,
        portal_port: int,
    ) -> None:
        logs = root / "logs"
        probe_port = free_port()
        now = time.monotonic()

        def service(
            name: str,
            log_name: str,
            args: list[str],
            back: Callable[[httpx.AsyncClient], Awaitable[bool]],
        ) -> Service:
            return Service(name, log_name, args, logs, Restarts(self.policy, now), back)

        self.services = [
            service(
                "delivery service",
                "delivery",
                [
                    "delivery",
                    f"--kubeconfig={info.kubeconfig}",
                    f"--store=sqlite:///{root / 'delivery.db'}",
                    f"--listen=127.0.0.1:{delivery_port}",
                    # Loopback like the rest; a fixed port could clash with the host's.
                    f"--metrics-listen=127.0.0.1:{free_port()}",
                    "--allow-cidr=127.0.0.1/32",
                ],
                lambda http: _http_ok(http, f"{delivery_url}/readyz"),
            ),
            service(
                "operator",
                "operator",
                [
                    "controller",
                    f"--kubeconfig={info.kubeconfig}",
                    f"--delivery-url={delivery_url}",
                    "--probe-host=127.0.0.1",
                    f"--probe-port={probe_port}",
                    "--lease-namespace=default",
                ],
                lambda http: _leading(http, f"http://127.0.0.1:{probe_port}/healthz"),
            ),
            service(
                "portal",
                "portal",
                [
                    "portal",
                    f"--kubeconfig={info.kubeconfig}",
                    f"--listen=127.0.0.1:{portal_port}",
                    f"--public-url=http://127.0.0.1:{portal_port}",
                    f"--delivery-url={delivery_url}",
                    # The delivery service's list: customers register what can be delivered to.
                    "--allow-cidr=127.0.0.1/32",
                    f"--key-namespace={SAMPLE_NAMESPACE}",
                    f"--key-secret={PORTAL_KEY_SECRET}",
                ],
                lambda http: _http_ok(http, f"http://127.0.0.1:{portal_port}/readyz"),
            ),
        ]
        for s in self.services:
            s.start(now)

    async def supervise(
        self,
        cluster: LocalCluster,
        api: client.ApiClient,
        portal_base: str,
        lock: devstate.StateLock,
    ) -> int:
        """Until a stop signal cancels it: restart crashed services, give up on the control
        plane dying or a service crashing too often (1), keep the state file's portal
        ticket valid."""
        while True:
            if self.output is not None:
                self.output.probe()
            if not self.control_plane_alive(cluster):
                return 1
            for service in self.services:
                if not self.tend(service, time.monotonic()):
                    return 1
            if self.portal_renew_at is not None and time.monotonic() >= self.portal_renew_at:
                self.portal_renew_at = None
                self._spawn(self.renew_portal(api, portal_base, lock))
            await asyncio.sleep(0.5)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def open_portal(
        self, api: client.ApiClient, portal_base: str, lock: devstate.StateLock
    ) -> str | None:
        """The sample app's portalUrl, also written to the state file; None (said) when no
        ticket could be had: the rest of the playground works without one."""
        try:
            url = await portal_access.open_portal(api, portal_base, SAMPLE_NAMESPACE, SAMPLE_APP)
        except (portal_access.PortalAccessError, client.ApiException, OSError) as exc:
            self.warn(f"no portal ticket for {SAMPLE_APP}: {exc}")
            return None
        self.state["portalUrl"] = url
        lock.write_state(self.state)
        self.portal_renew_at = time.monotonic() + portal_access.REFRESH_AFTER
        return url

    async def renew_portal(
        self, api: client.ApiClient, portal_base: str, lock: devstate.StateLock
    ) -> None:
        """A new ticket in the state file before the old one ends. Not printed again:
        `kubectl webhooks portal` prints one on demand."""
        try:
            url = await portal_access.open_portal(api, portal_base, SAMPLE_NAMESPACE, SAMPLE_APP)
        except (portal_access.PortalAccessError, client.ApiException, OSError) as exc:
            self.warn(f"could not renew the portal ticket in the state file ({exc}); retrying")
            self.portal_renew_at = time.monotonic() + 60.0
            return
        self.state["portalUrl"] = url
        lock.write_state(self.state)
        self.portal_renew_at = time.monotonic() + portal_access.REFRESH_AFTER

    def control_plane_alive(self, cluster: LocalCluster) -> bool:
        for piece in cluster.children:
            code = piece.process.poll()
            if code is None:
                continue
            self.fail(
                f"{piece.name} {describe_exit(code)}: the playground cannot go on without its"
                f" control plane, so it stops. Last lines of {piece.log_path}:"
            )
            for line in _tail(piece.log_path, 10):
                self.say(f"  {escape(line)}", highlight=False)
            return False
        return True

    def tend(self, service: Service, now: float) -> bool:
        """Restart `service` if it exited and its backoff has passed; False to give up."""
        if service.process is not None and service.process.returncode is None:
            code = service.process.poll()
            if code is None:
                return True
            delay = service.restarts.exited(now)
            last = _tail(service.log_path, 1)
            why = f" ({last[0][:200]})" if last and code >= 0 else ""
            if delay is None:
                self.fail(
                    f"the {service.name} {describe_exit(code)}{why}, after"
                    f" {service.restarts.count} restarts in a row; giving up. Its log:"
                    f" {service.log_path}"
                )
                return False
            self.warn(
                f"the {service.name} {describe_exit(code)}{why}; restarting it in {delay:.0f} s"
                f" (restart {service.restarts.count} of at most {self.policy.limit} in a row;"
                f" log: {service.log_path})"
            )
            service.restart_at = now + delay
        if service.restart_at is not None and now >= service.restart_at:
            service.start(now)
            self._spawn(self.announce_back(service))
        return True

    async def announce_back(self, service: Service, limit: float = 90.0) -> None:
        process = service.process
        deadline = time.monotonic() + limit
        async with httpx.AsyncClient(timeout=2.0) as http:
            while time.monotonic() < deadline and service.process is process:
                if process is None or process.poll() is not None:
                    return  # crashed again: `tend` says so
                if await service.back(http):
                    self.step(f"the {service.name} is running again (pid {process.pid})")
                    return
                await asyncio.sleep(0.5)

    async def wait_ready(self, probes: list[str], limit: float = 90.0) -> None:
        """Until every URL in `probes` answers 200, or a service exits."""
        deadline = time.monotonic() + limit
        waiting = list(probes)
        async with httpx.AsyncClient(timeout=2.0) as http:
            while time.monotonic() < deadline:
                for service in self.services:
                    code = service.process.poll() if service.process else None
                    if code is not None:
                        tail = "\n".join(_tail(service.log_path, 15))
                        raise RuntimeError(
                            f"the {service.name} {describe_exit(code)} while starting;"
                            f" {service.log_path} ends with:\n{tail}"
                        )
                waiting = [url for url in waiting if not await _http_ok(http, url)]
                if not waiting:
                    return
                await asyncio.sleep(0.3)
        logs = ", ".join(str(s.log_path) for s in self.services)
        raise RuntimeError(f"{' and '.join(waiting)} did not answer 200; see {logs}")

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
                SAMPLE_NAMESPACE,
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
            self.warn(f"first event refused: {response.text}")

    def hints(self, info: ClusterInfo, delivery_url: str, portal_url: str | None) -> None:
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
            "    -H 'Content-Type: application/json' \\",
            '    -d \'{"type": "invoice.paid", "data": {"invoiceId": "in_3"}}\'',
            "    (grant the default ServiceAccount the emit verb first:",
            f"     {kubectl} create role emit --verb=emit"
            + " --resource=webhookapps.webhook-operator.dev",
            f"     {kubectl} create rolebinding emit --role=emit"
            + " --serviceaccount=default:default)",
        ]
        if portal_url is not None:
            lines += [
                "",
                f"Customer portal for {SAMPLE_APP} (a manage ticket, valid"
                f" {portal_access.TICKET_TTL}; it is a password: share it with care):",
                f"  {portal_url}",
                "  the tenant API takes the ticket after #ticket= as Authorization: Bearer,"
                " e.g. GET /v1/portal/catalog;",
                f"  a new ticket: {kubectl} webhooks portal {SAMPLE_APP} [--scope read]",
            ]
        lines += ["", "Ctrl-C stops everything."]
        for line in lines:
            self.say(line, highlight=False)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _interrupt_on_stop_signals() -> None:
    """While starting, SIGTERM and a hang-up stop the playground as Ctrl-C does."""
    for sig in STOP_SIGNALS:
        if sig != signal.SIGINT:
            signal.signal(sig, _interrupt)


def _ignore_stop_signals(loop: asyncio.AbstractEventLoop | None = None) -> None:
    for sig in STOP_SIGNALS:
        if loop is not None:
            # Removed here: the loop, when closed, would restore SIGTERM's default (death).
            loop.remove_signal_handler(sig)
        signal.signal(sig, signal.SIG_IGN)


def _hold_stop_signals() -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


def _release_stop_signals() -> None:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def _stop_self() -> None:
    os.kill(os.getpid(), signal.SIGINT)


def main(console: Console) -> int:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    if not console.is_terminal:
        console.soft_wrap = True  # `| tee log`: whole lines, not cut at 80 columns
    output = SurvivingOutput(console.file, on_lost=_stop_self)
    console.file = cast(IO[str], output)
    return Playground(console, output=output).run()
