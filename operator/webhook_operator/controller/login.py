"""kopf's credentials inside a Pod, found as client-go finds them.

kopf's own `login_with_service_account` connects to the hard-coded
https://kubernetes.default.svc, which needs cluster DNS, and ignores
KUBERNETES_SERVICE_HOST/PORT, which the kubelet sets in every container and which are the
only way to reach an apiserver in a cluster without DNS or Service routing (a host-network
Pod on a node without kube-proxy, as in the project's own node tests). This login reads
those variables, the mounted ServiceAccount token and CA, and the namespace file.

The token is a bound, rotated one (the kubelet renews it on disk): the connection info
expires after a few minutes so that kopf logs in again and reads the current file, well
within the token's lifetime.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from pathlib import Path

import kopf

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
REREAD_AFTER = dt.timedelta(minutes=5)


def in_cluster_server(environ: Mapping[str, str]) -> str | None:
    """https://HOST:PORT from the kubelet's variables, None outside a Pod."""
    host = environ.get("KUBERNETES_SERVICE_HOST")
    port = environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        return None
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address
    return f"https://{host}:{port}"


def login_in_cluster(
    *,
    trust_env: bool = False,
    environ: Mapping[str, str] | None = None,
    root: Path = SERVICE_ACCOUNT_DIR,
    now: dt.datetime | None = None,
) -> kopf.ConnectionInfo | None:
    """ConnectionInfo for the Pod's ServiceAccount; None when not in a Pod."""
    server = in_cluster_server(os.environ if environ is None else environ)
    token_path = root / "token"
    if server is None or not token_path.is_file():
        return None
    token = token_path.read_text(encoding="utf-8").strip()
    namespace_path, ca_path = root / "namespace", root / "ca.crt"
    namespace = namespace_path.read_text().strip() if namespace_path.is_file() else None
    return kopf.ConnectionInfo(
        server=server,
        ca_path=str(ca_path) if ca_path.is_file() else None,
        token=token or None,
        default_namespace=namespace or None,
        expiration=(now or dt.datetime.now(dt.UTC)) + REREAD_AFTER,
        trust_env=trust_env,
    )
