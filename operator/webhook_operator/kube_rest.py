"""A small async Kubernetes REST client on aiohttp, for the delivery service and the portal.

Why not the generated client: the delivery service asks Kubernetes four things (list and
watch apps, endpoints and Secrets; read a Secret; TokenReview; SubjectAccessReview), all
as JSON it reads as dicts, and kubernetes_asyncio's generated models cost about 36 MB
resident just to import (bench/import_memory.py), a third of the process. lightkube
(measured at 23 MB with httpx, which the service does not otherwise import) would still be
most of that. aiohttp is already the service's HTTP stack.

Credentials as client-go finds them:
- in a Pod (KUBERNETES_SERVICE_HOST set and no kubeconfig given): the apiserver at
  KUBERNETES_SERVICE_HOST:KUBERNETES_SERVICE_PORT, the mounted ServiceAccount token
  (re-read every minute: bound tokens are rotated by the kubelet) and CA;
- otherwise a kubeconfig (KUBECONFIG, else ~/.kube/config): the current context's cluster
  (server, certificate-authority[-data], insecure-skip-tls-verify) and user (token,
  tokenFile, client-certificate[-data] and client-key[-data], or an exec credential plugin
  whose token is cached until its expirationTimestamp).

Every call has a timeout (connect 5 s, whole call 30 s); a watch has a read timeout a
little past its server-side timeoutSeconds instead of a total."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from multidict import CIMultiDict

from webhook_operator.timestamps import parse_ts

CONNECT_TIMEOUT = 5.0
REQUEST_TIMEOUT = 30.0
WATCH_READ_MARGIN = 30.0
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TOKEN_REREAD_SECONDS = 60.0
# An exec plugin's token is renewed this long before it expires.
EXEC_EXPIRY_MARGIN = 60.0
# A plugin that hangs (an interactive login with no one to answer) must not hold a call.
EXEC_TIMEOUT = 30.0

TokenSource = Callable[[], Awaitable[str | None]]


class KubeConfigError(Exception):
    """The credentials cannot be used; the message says which part and why."""


class KubeApiError(Exception):
    """The apiserver answered with an error status."""

    def __init__(
        self, status: int, reason: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"HTTP {status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.headers: CIMultiDict[str] = CIMultiDict(headers or {})  # names in any case


@dataclass(frozen=True)
class Credentials:
    server: str
    ssl: ssl.SSLContext | bool
    token: TokenSource


def _static(token: str | None) -> TokenSource:
    async def source() -> str | None:
        return token

    return source


def static(server: str, token: str | None = None) -> Credentials:
    """Credentials of a plain server and token (tests, documents built offline)."""
    return Credentials(server.rstrip("/"), False, _static(token))


def _file_token(path: Path, every: float = TOKEN_REREAD_SECONDS) -> TokenSource:
    cached: list[Any] = [None, 0.0]

    async def source() -> str | None:
        now = time.monotonic()
        if cached[0] is None or now - cached[1] > every:
            cached[0] = (await asyncio.to_thread(path.read_text)).strip()
            cached[1] = now
        return str(cached[0])

    return source


def _ssl_context(
    ca_file: str | None,
    ca_data: bytes | None,
    cert: tuple[str, str] | None,
    insecure: bool,
) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file)
    if ca_data is not None:
        context.load_verify_locations(cadata=ca_data.decode())
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert is not None:
        context.load_cert_chain(cert[0], cert[1])
    return context


def in_cluster(
    environ: Mapping[str, str] | None = None, root: Path = SERVICE_ACCOUNT_DIR
) -> Credentials:
    env = os.environ if environ is None else environ
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise KubeConfigError(
            "not in a Pod: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set"
        )
    token, ca = root / "token", root / "ca.crt"
    for needed in (token, ca):
        if not needed.is_file():
            raise KubeConfigError(f"the ServiceAccount's {needed} is not mounted")
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address
    context = _ssl_context(str(ca), None, None, insecure=False)
    return Credentials(f"https://{host}:{port}", context, _file_token(token))


def _data_or_file(
    entry: Mapping[str, Any], name: str, base: Path
) -> tuple[bytes | None, str | None]:
    """(inline bytes, path) of a kubeconfig field such as certificate-authority."""
    data = entry.get(f"{name}-data")
    if data:
        return base64.b64decode(data), None
    path = entry.get(name)
    if path:
        return None, str(base / path)
    return None, None


def _named(items: Any, name: str, what: str) -> dict[str, Any]:
    for item in items or []:
        if isinstance(item, dict) and item.get("name") == name:
            found = item.get(what[:-1] if what.endswith("s") else what) or {}
            return dict(found)
    raise KubeConfigError(f"the kubeconfig has no {what[:-1]} named {name!r}")


def _client_cert(user: Mapping[str, Any], base: Path, keep: list[str]) -> tuple[str, str] | None:
    """Paths of the client certificate and key; inline data goes to private temp files
    (ssl loads a chain from files only) that live as long as the process."""
    cert_data, cert_path = _data_or_file(user, "client-certificate", base)
    key_data, key_path = _data_or_file(user, "client-key", base)
    paths = []
    for data, path in ((cert_data, cert_path), (key_data, key_path)):
        if data is not None:
            handle, path = tempfile.mkstemp(prefix="kube-", suffix=".pem")
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            keep.append(path)
        paths.append(path)
    if paths[0] and paths[1]:
        return paths[0], paths[1]
    return None


def _exec_token(spec: Mapping[str, Any], env: Mapping[str, str]) -> TokenSource:
    """A client.authentication.k8s.io exec plugin (aws, gke-gcloud-auth-plugin,
    kubelogin): run it, cache its token until shortly before it expires."""
    command = spec.get("command")
    if not command:
        raise KubeConfigError("the kubeconfig's exec credential plugin names no command")
    args = [str(command), *[str(a) for a in spec.get("args") or []]]
    extra = {str(e["name"]): str(e["value"]) for e in spec.get("env") or [] if "name" in e}
    cached: list[Any] = [None, 0.0]

    async def source() -> str | None:
        if cached[0] is not None and time.time() < cached[1]:
            return str(cached[0])
        proc = await asyncio.create_subprocess_exec(
            *args,
            env={**env, **extra},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), EXEC_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise KubeConfigError(
                f"the exec credential plugin {command} gave no answer in {EXEC_TIMEOUT:g}s"
            ) from None
        if proc.returncode != 0:
            raise KubeConfigError(
                f"the exec credential plugin {command} failed ({proc.returncode}):"
                f" {err.decode(errors='replace')[:300]}"
            )
        status = (json.loads(out) or {}).get("status") or {}
        token = status.get("token")
        if not token:
            raise KubeConfigError(
                f"the exec credential plugin {command} gave no token (client certificates"
                " from exec plugins are not supported)"
            )
        expiry = status.get("expirationTimestamp")
        until = time.time() + 300.0
        if expiry:
            moment = parse_ts(expiry)
            if moment is not None:
                until = moment.timestamp() - EXEC_EXPIRY_MARGIN
        cached[0], cached[1] = token, until
        return str(token)

    return source


def from_kubeconfig(
    path: str | None = None, environ: Mapping[str, str] | None = None
) -> Credentials:
    env = os.environ if environ is None else environ
    chosen = path or (env.get("KUBECONFIG") or "").split(os.pathsep)[0] or None
    file = Path(chosen) if chosen else Path.home() / ".kube" / "config"
    import yaml  # only here: in a Pod there is no kubeconfig to read

    try:
        config = yaml.safe_load(file.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise KubeConfigError(f"cannot read the kubeconfig {file}: {exc}") from None
    base = file.parent
    context_name = config.get("current-context")
    if not context_name:
        raise KubeConfigError(f"the kubeconfig {file} has no current-context")
    context = _named(config.get("contexts"), context_name, "contexts")
    cluster = _named(config.get("clusters"), str(context.get("cluster")), "clusters")
    user = _named(config.get("users"), str(context.get("user")), "users")
    server = cluster.get("server")
    if not server:
        raise KubeConfigError(f"cluster {context.get('cluster')!r} has no server")
    ca_data, ca_file = _data_or_file(cluster, "certificate-authority", base)
    keep: list[str] = []
    context_ssl = _ssl_context(
        ca_file,
        ca_data,
        _client_cert(user, base, keep),
        bool(cluster.get("insecure-skip-tls-verify")),
    )
    token: TokenSource
    if user.get("token"):
        token = _static(str(user["token"]))
    elif user.get("tokenFile"):
        token = _file_token(base / str(user["tokenFile"]))
    elif user.get("exec"):
        token = _exec_token(user["exec"], env)
    elif user.get("auth-provider"):
        raise KubeConfigError(
            "kubeconfig auth-provider entries are not supported; use an exec credential plugin"
        )
    else:
        token = _static(None)
    return Credentials(
        str(server).rstrip("/"), context_ssl if server.startswith("https") else False, token
    )


def credentials(kubeconfig: str | None = None) -> Credentials:
    """In-cluster credentials inside a Pod, else the kubeconfig (KUBECONFIG or ~/.kube)."""
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        return in_cluster()
    return from_kubeconfig(kubeconfig)


def watch_timeout(server_timeout: float | None) -> aiohttp.ClientTimeout:
    read = server_timeout + WATCH_READ_MARGIN if server_timeout is not None else None
    return aiohttp.ClientTimeout(sock_connect=CONNECT_TIMEOUT, sock_read=read)


REQUEST = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT, sock_connect=CONNECT_TIMEOUT)


class KubeRest:
    def __init__(self, creds: Credentials) -> None:
        self.creds = creds
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            # Full URLs rather than base_url: a server may have a path (a proxy's prefix).
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self.creds.ssl),
                headers={"Accept": "application/json"},
            )
        return self._session

    async def _headers(self) -> dict[str, str]:
        token = await self.creds.token()
        return {"Authorization": f"Bearer {token}"} if token else {}

    @staticmethod
    async def _error(response: aiohttp.ClientResponse) -> KubeApiError:
        text = await response.text(errors="replace")
        try:
            message = str(json.loads(text).get("message") or text)
        except (ValueError, AttributeError):
            message = text
        return KubeApiError(
            response.status, response.reason or "", message[:1000], response.headers
        )

    async def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        limits: aiohttp.ClientTimeout = REQUEST,
        content_type: str = "application/json",
    ) -> Any:
        headers = await self._headers()
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        async with self.session.request(
            method,
            self.creds.server + path,
            params=params,
            data=data,
            headers=headers,
            timeout=limits,
        ) as response:
            if response.status >= 400:
                raise await self._error(response)
            if response.content_type == "application/json":
                return await response.json(loads=json.loads)
            return await response.text()

    async def get(
        self,
        path: str,
        params: Mapping[str, str] | None = None,
        limits: aiohttp.ClientTimeout = REQUEST,
    ) -> Any:
        return await self.request("GET", path, params, limits=limits)

    async def post(self, path: str, body: Any) -> Any:
        return await self.request("POST", path, body=body)

    async def put(self, path: str, body: Any) -> Any:
        return await self.request("PUT", path, body=body)

    async def merge_patch(self, path: str, body: Any) -> Any:
        return await self.request(
            "PATCH", path, body=body, content_type="application/merge-patch+json"
        )

    @property
    def token(self) -> TokenSource:
        """The bearer token source, for a caller that talks to another service as the same
        identity (the operator to the delivery service)."""
        return self.creds.token

    async def watch(
        self, path: str, params: Mapping[str, str]
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """(type, object) of each watch event until the server ends the watch. A watch
        that fails (410 Gone: the version is too old) raises KubeApiError; an ERROR event
        in the stream does too."""
        server_timeout = params.get("timeoutSeconds")
        async with self.session.get(
            self.creds.server + path,
            params={**params, "watch": "1"},
            headers=await self._headers(),
            timeout=watch_timeout(float(server_timeout) if server_timeout else None),
        ) as response:
            if response.status >= 400:
                raise await self._error(response)
            async for line in response.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, obj = str(event.get("type")), event.get("object") or {}
                if kind == "ERROR":
                    raise KubeApiError(
                        int(obj.get("code") or 500),
                        str(obj.get("reason") or ""),
                        str(obj.get("message") or ""),
                    )
                yield kind, obj

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def connect(kubeconfig: str | None = None) -> KubeRest:
    return KubeRest(credentials(kubeconfig))
