"""What the command talks to: the delivery service's (or the portal's) URL, the
kubeconfig, the namespace and the bearer token, each with where it came from so errors can
say what to change.

Order, most explicit first: flags (and their environment variables, which typer folds
into the flags), then the dev playground's state file written by `webhook-operator dev`,
then kubectl's own defaults (~/.kube/config, the context's namespace)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from webhook_operator.devcluster.devstate import state_file
from webhook_operator.plugin.errors import Exit, PluginError
from webhook_operator.plugin.parsing import check_subject, token_subject

SERVER_ENV = "WEBHOOK_OPERATOR_SERVER"
TOKEN_ENV = "WEBHOOK_OPERATOR_TOKEN"
PORTAL_ENV = "WEBHOOK_OPERATOR_PORTAL_URL"
PORT_FORWARD_HINT = (
    "for a cluster, run `kubectl -n webhook-operator-system port-forward"
    " svc/webhook-operator-delivery 8080` and pass --server http://127.0.0.1:8080"
)
PORTAL_PORT_FORWARD_HINT = (
    "for a cluster, run `kubectl -n webhook-operator-system port-forward"
    " svc/webhook-operator-portal 8090` and pass --portal-url http://127.0.0.1:8090"
)
TOKEN_HINT = (
    f"pass --token or set {TOKEN_ENV} to a ServiceAccount token, for example"
    ' --token "$(kubectl create token <serviceaccount> -n <namespace>)"'
)


def default_kubeconfig() -> Path:
    return Path.home() / ".kube" / "config"


@dataclass(frozen=True)
class DevState:
    path: Path
    delivery_url: str | None
    kubeconfig: str | None
    portal_url: str | None = None  # the base only: the playground's URL carries a ticket


def read_state(path: Path) -> DevState | None:
    """The playground's state, or None when there is none (the playground never ran)."""
    try:
        raw = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PluginError(f"cannot read the dev playground's state file {path}: {exc}") from None
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise PluginError(
            f"the dev playground's state file {path} is not a JSON object; run"
            " `webhook-operator dev` again or delete the file"
        )
    url, kubeconfig = data.get("deliveryUrl"), data.get("kubeconfig")
    portal = data.get("portalUrl")
    return DevState(
        path=path,
        delivery_url=url if isinstance(url, str) and url else None,
        kubeconfig=kubeconfig if isinstance(kubeconfig, str) and kubeconfig else None,
        portal_url=origin_of(portal) if isinstance(portal, str) else None,
    )


def origin_of(url: str) -> str | None:
    """scheme://host:port of an http(s) URL, None for anything else. The playground's
    portalUrl opens the page with a ticket for the sample app; a new ticket needs only
    where the portal is."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


def portal_base(url: str) -> str:
    """The --portal-url as the base of the portal's routes. A path is kept (a portal behind
    an ingress may live under one); a query or a fragment is dropped, so a pasted portal
    link, whose fragment holds someone's ticket, still works and the ticket goes nowhere."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise PluginError(f"--portal-url must be an http:// or https:// URL, not {url!r}")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


@dataclass(frozen=True)
class Kubeconfig:
    """The parts of a (possibly merged) kubeconfig the plugin needs, read the way kubectl
    reads KUBECONFIG lists: the first file that names the current context, or defines a
    context or user of a given name, wins."""

    spec: str
    current_context: str | None
    namespace: str | None
    user_name: str | None
    user: dict[str, Any]
    user_file: Path | None


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise PluginError(f"cannot read kubeconfig {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise PluginError(f"kubeconfig {path} is not valid YAML: {exc}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise PluginError(f"kubeconfig {path} is not a kubeconfig (not a YAML mapping)")
    return loaded


def _named(files: list[tuple[Path, dict[str, Any]]], kind: str, key: str, name: str) -> Any:
    for path, config in files:
        for entry in config.get(kind) or []:
            if isinstance(entry, dict) and entry.get("name") == name:
                return path, entry.get(key) or {}
    return None, None


def load_kubeconfig(spec: str) -> Kubeconfig:
    """Read a kubeconfig path, or an os.pathsep-separated list of them as in KUBECONFIG."""
    paths = [Path(p).expanduser() for p in spec.split(os.pathsep) if p]
    existing = [p for p in paths if p.exists()]
    if not existing:
        raise PluginError(f"kubeconfig {spec} does not exist")
    files = [(p, _load_yaml(p)) for p in existing]
    current = next((c["current-context"] for _, c in files if c.get("current-context")), None)
    namespace = user_name = None
    user: dict[str, Any] = {}
    user_file = None
    if current:
        _, context = _named(files, "contexts", "context", current)
        if isinstance(context, dict):
            namespace = context.get("namespace") or None
            user_name = context.get("user") or None
        if user_name:
            user_file, found = _named(files, "users", "user", user_name)
            user = found if isinstance(found, dict) else {}
    return Kubeconfig(spec, current, namespace, user_name, user, user_file)


def token_from_user(kubeconfig: Kubeconfig, service: str = "the delivery service") -> str:
    """The bearer token of the kubeconfig's current user; the delivery service and the
    portal check it with a TokenReview, so only tokens work, and other credentials get an
    explanation."""
    user = kubeconfig.user
    who = f"kubeconfig user {kubeconfig.user_name!r}" if kubeconfig.user_name else "the kubeconfig"
    token = user.get("token")
    if isinstance(token, str) and token.strip():
        return token.strip()
    token_file = user.get("tokenFile")
    if isinstance(token_file, str) and token_file:
        path = Path(token_file).expanduser()
        if not path.is_absolute() and kubeconfig.user_file is not None:
            # kubectl resolves relative paths against the kubeconfig that names them.
            path = kubeconfig.user_file.parent / path
        try:
            text = path.read_text().strip()
        except OSError as exc:
            raise PluginError(f"cannot read the tokenFile of {who}: {exc}", Exit.DENIED) from None
        if text:
            return text
        raise PluginError(f"the tokenFile {path} of {who} is empty", Exit.DENIED)
    if user.get("exec"):
        how = "an exec plugin"
    elif user.get("client-certificate") or user.get("client-certificate-data"):
        how = "a client certificate"
    elif user.get("auth-provider"):
        how = "an auth provider"
    elif user.get("username"):
        how = "a username and password"
    else:
        how = "no credentials"
    raise PluginError(
        f"{who} authenticates with {how}, but {service} accepts bearer tokens only: {TOKEN_HINT}",
        Exit.DENIED,
    )


@dataclass
class Target:
    """The resolved flags of one command. Everything is looked up on first use, so
    `verify --secret` needs no kubeconfig and `pause` needs no delivery service."""

    namespace_flag: str | None = None
    server_flag: str | None = None
    kubeconfig_flag: str | None = None
    token_flag: str | None = None
    portal_flag: str | None = None
    service: str = "the delivery service"  # for messages about the token
    state_path: Path = field(default_factory=state_file)
    home_kubeconfig: Path = field(default_factory=default_kubeconfig)

    @cached_property
    def state(self) -> DevState | None:
        # The playground is the default target only when nothing names another service.
        if self.server_flag or self.portal_flag:
            return None
        return read_state(self.state_path)

    @cached_property
    def server(self) -> tuple[str, str]:
        """(URL without trailing slash, where it came from)."""
        if self.server_flag:
            return self.server_flag.rstrip("/"), "--server"
        state = self.state
        if state is not None and state.delivery_url:
            return state.delivery_url.rstrip("/"), (
                f"the dev playground's state file {state.path}; is `webhook-operator dev`"
                " still running?"
            )
        raise PluginError(
            f"no delivery service to talk to: pass --server URL or set {SERVER_ENV};"
            f" {PORT_FORWARD_HINT}; for a local playground run `webhook-operator dev`"
        )

    @cached_property
    def portal(self) -> tuple[str, str]:
        """(the portal's base URL, where it came from)."""
        if self.portal_flag:
            return portal_base(self.portal_flag), "--portal-url"
        state = self.state
        if state is not None and state.portal_url:
            return state.portal_url, (
                f"the dev playground's state file {state.path}; is `webhook-operator dev`"
                " still running?"
            )
        raise PluginError(
            f"no portal to talk to: pass --portal-url URL or set {PORTAL_ENV};"
            f" {PORTAL_PORT_FORWARD_HINT}; for a local playground run `webhook-operator dev`"
        )

    @cached_property
    def kubeconfig_spec(self) -> tuple[str | None, str]:
        """(path or path list, where it came from); None when there is none at all."""
        if self.kubeconfig_flag:
            return self.kubeconfig_flag, "--kubeconfig/KUBECONFIG"
        state = self.state
        if state is not None and state.kubeconfig:
            return state.kubeconfig, f"the dev playground's state file {state.path}"
        if self.home_kubeconfig.exists():
            return str(self.home_kubeconfig), str(self.home_kubeconfig)
        return None, "none"

    @cached_property
    def kubeconfig(self) -> Kubeconfig | None:
        spec, _ = self.kubeconfig_spec
        return load_kubeconfig(spec) if spec else None

    def require_kubeconfig(self) -> str:
        spec, _ = self.kubeconfig_spec
        if spec is None:
            raise PluginError(
                "no kubeconfig: pass --kubeconfig or set KUBECONFIG (or create ~/.kube/config)"
            )
        return spec

    @cached_property
    def namespace(self) -> str:
        if self.namespace_flag:
            return self.namespace_flag
        kubeconfig = self.kubeconfig
        if kubeconfig is not None and kubeconfig.namespace:
            return kubeconfig.namespace
        return "default"

    @cached_property
    def token(self) -> str:
        if self.token_flag:
            return self.token_flag.strip()
        kubeconfig = self.kubeconfig
        if kubeconfig is None:
            raise PluginError(f"no credentials: no kubeconfig was found; {TOKEN_HINT}", Exit.DENIED)
        return token_from_user(kubeconfig, self.service)

    @cached_property
    def caller(self) -> str | None:
        """Who the token belongs to, as far as the plugin can tell without asking the
        apiserver: the subject a Kubernetes-issued token names, else the kubeconfig's user
        for a token taken from the kubeconfig. A label for tickets, never a credential."""
        named = token_subject(self.token)
        if named or self.token_flag:
            return named
        kubeconfig = self.kubeconfig
        user = kubeconfig.user_name if kubeconfig is not None else None
        try:
            return check_subject(user) if user else None
        except ValueError:
            return None
