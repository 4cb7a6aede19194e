"""Test harness: the real processes and servers the integration tests drive (the
operator, the delivery service, HTTP receivers) and polling helpers."""

from __future__ import annotations

import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

from kubernetes.client.exceptions import ApiException

from webhook_operator.devcluster import LocalCluster
from webhook_operator.devcluster.binaries import kubectl_binary
from webhook_operator.devcluster.cluster import free_port
from webhook_operator.devcluster.install import api_client

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


class Cluster:
    """A running cluster the tests may use: its kubeconfig and an API client."""

    def __init__(self, kubeconfig: Path, local: LocalCluster | None) -> None:
        self.kubeconfig = kubeconfig
        self.local = local
        self.api = api_client(kubeconfig)

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(kubectl_binary()), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}"
            )
        return result


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:40].strip("-")


class OperatorProcess:
    """`webhook-operator controller` as a subprocess against the test cluster."""

    def __init__(self, kubeconfig: Path, log_dir: Path, lease_name: str, *extra: str) -> None:
        self.kubeconfig = kubeconfig
        self.log_dir = log_dir
        self.lease_name = lease_name
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None
        self.args: list[str] = []
        self.log_path = log_dir / f"operator-{lease_name}.log"

    def start(self) -> OperatorProcess:
        log = self.log_path.open("ab")
        self.args = [
            f"--kubeconfig={self.kubeconfig}",
            "--lease-namespace=default",
            f"--lease-name={self.lease_name}",
            "--lease-duration=4",
            "--probe-host=127.0.0.1",
            f"--probe-port={free_port()}",
            "--status-interval=0.5",
            *self.extra,
        ]
        self.process = subprocess.Popen(
            [str(BIN / "webhook-operator"), "controller", *self.args],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def eventually(
    check: Callable[[], object], timeout: float = 30.0, interval: float = 0.2, what: str = ""
) -> object:
    """Poll `check` until it returns a truthy value (returned) or raise with the last error."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
            last = None
        except (AssertionError, ApiException, KeyError) as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"not met within {timeout}s: {what} (last: {last!r})")


PROXY_VARIABLES = {"https_proxy", "http_proxy", "no_proxy", "all_proxy"}


def without_proxy(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment minus proxy settings: test services send only to loopback, and a
    proxy set in the shell (a corporate one, say) must not carry that traffic."""
    return {k: v for k, v in environ.items() if k.lower() not in PROXY_VARIABLES}


class ServiceProcess:
    """A `webhook-operator` role as a subprocess against the test cluster, logging to a
    file, ready when its /readyz answers 200."""

    role = "service"

    def __init__(self, workdir: Path, name: str) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def args(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        """The process's environment: this one's, minus proxy settings."""
        return without_proxy(os.environ)

    def start(self, wait: bool = True) -> Self:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [str(BIN / "webhook-operator"), *self.args()],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.environment(),
        )
        log.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        import httpx

        def ready() -> bool:
            assert self.process is not None
            assert self.process.poll() is None, f"{self.role} exited:\n{self.log()[-3000:]}"
            try:
                return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        eventually(ready, timeout=timeout, what=f"{self.role} ready")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class DeliveryProcess(ServiceProcess):
    """`webhook-operator delivery` against the test cluster. Deliveries may reach 127.0.0.1
    only."""

    role = "delivery service"

    def __init__(
        self, kubeconfig: Path, workdir: Path, store_url: str, *extra: str, name: str = "delivery"
    ) -> None:
        super().__init__(workdir, name)
        self.kubeconfig = kubeconfig
        self.store_url = store_url
        self.extra = extra
        self.metrics_url = f"http://127.0.0.1:{free_port()}/metrics"

    def args(self) -> list[str]:
        return [
            "delivery",
            f"--kubeconfig={self.kubeconfig}",
            f"--store={self.store_url}",
            f"--listen=127.0.0.1:{self.port}",
            f"--metrics-listen={self.metrics_url.removeprefix('http://').split('/')[0]}",
            "--allow-cidr=127.0.0.1/32",
            *self.extra,
        ]


class PortalProcess(ServiceProcess):
    """`webhook-operator portal` against the test cluster. Customers' URLs may point to
    127.0.0.1 only, as deliveries may (the delivery service's allow-list)."""

    role = "portal"

    def __init__(
        self,
        kubeconfig: Path,
        workdir: Path,
        delivery_url: str,
        *extra: str,
        key_namespace: str = "default",
        key_secret: str | None = None,
        name: str = "portal",
    ) -> None:
        super().__init__(workdir, name)
        self.kubeconfig = kubeconfig
        self.delivery_url = delivery_url
        self.extra = extra
        self.key_namespace = key_namespace
        self.key_secret = key_secret or f"portal-key-{os.urandom(3).hex()}"

    def args(self) -> list[str]:
        return [
            "portal",
            f"--kubeconfig={self.kubeconfig}",
            f"--listen=127.0.0.1:{self.port}",
            f"--delivery-url={self.delivery_url}",
            f"--key-namespace={self.key_namespace}",
            f"--key-secret={self.key_secret}",
            "--allow-cidr=127.0.0.1/32",
            *self.extra,
        ]


class Receiver:
    """A real HTTP receiver on 127.0.0.1 that records every request. Answers 204 unless
    told otherwise per path: `respond(path, (status, headers, delay_seconds), ...)` queues
    answers that are used in order, the last one repeating."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.plans: dict[str, list[tuple[int, dict[str, str], float]]] = {}
        self.tls_failures: list[str] = []  # handshakes that failed, with OpenSSL's reason
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                if isinstance(self.request, ssl.SSLSocket):
                    try:
                        self.request.do_handshake()
                    except (ssl.SSLError, OSError) as exc:
                        with receiver.lock:
                            receiver.tls_failures.append(str(exc))
                        raise
                super().setup()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                peer_cert = None
                if isinstance(self.connection, ssl.SSLSocket):
                    peer_cert = self.connection.getpeercert()
                with receiver.lock:
                    receiver.requests.append(
                        {
                            "path": self.path,
                            "headers": dict(self.headers.items()),
                            "body": body,
                            "at": time.time(),
                            "peer_cert": peer_cert,
                        }
                    )
                    plan = receiver.plans.get(self.path) or [(204, {}, 0.0)]
                    status, headers, delay = plan[0]
                    if len(plan) > 1:
                        plan.pop(0)
                if delay:
                    time.sleep(delay)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                if status in (204, 304):
                    self.end_headers()  # no body may follow these
                    return
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        scheme = "http"
        if ssl_context is not None:
            # The handshake happens in each request's thread, so a client that fails it
            # (no client certificate, an untrusted server) holds up nobody else.
            self.httpd.socket = ssl_context.wrap_socket(
                self.httpd.socket, server_side=True, do_handshake_on_connect=False
            )
            scheme = "https"
            # A refused handshake is recorded in tls_failures, not printed as a traceback.
            self.httpd.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
        self.base = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return self.base + path

    def respond(self, path: str, *answers: tuple[int, dict[str, str], float]) -> None:
        with self.lock:
            self.plans[path] = list(answers)

    def received(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["path"] == path]

    def close(self) -> None:
        self.httpd.shutdown()


class Producer:
    """A ServiceAccount allowed to emit to some apps, with a real token."""

    def __init__(
        self,
        cluster: Cluster,
        namespace: str,
        apps: list[str],
        name: str = "producer",
        verbs: tuple[str, ...] = ("emit", "get", "list", "update"),
    ) -> None:
        cluster.kubectl("create", "serviceaccount", name, "-n", namespace)
        cluster.kubectl(
            "create",
            "role",
            name,
            "-n",
            namespace,
            *[f"--verb={v}" for v in verbs],
            "--resource=webhookapps.webhook-operator.dev",
            *[f"--resource-name={a}" for a in apps],
        )
        cluster.kubectl(
            "create",
            "rolebinding",
            name,
            "-n",
            namespace,
            f"--role={name}",
            f"--serviceaccount={namespace}:{name}",
        )
        self.token = cluster.kubectl("create", "token", name, "-n", namespace).stdout.strip()
        self.headers = {"Authorization": f"Bearer {self.token}"}
