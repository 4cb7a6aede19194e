"""The flags every `kubectl webhooks` command shares (namespace, delivery service,
kubeconfig, token, output format), declared once.

A typer callback on the app would make them group options, which click accepts only
before the subcommand; people type them after it (`kubectl webhooks ping ep -n team-a`).
So each command that wants them names one parameter of type `Shared`, and `shared_options`
gives typer a signature where that parameter is replaced by the five options, then folds
their values back into one `Shared` for the command. The flags, environment variables and
help text are therefore the same on every command, and stay where `--help` showed them:
after the command's own options."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Annotated, Any

import typer

from webhook_operator.plugin.render import Output
from webhook_operator.plugin.target import SERVER_ENV, TOKEN_ENV, Target


@dataclass(frozen=True)
class Shared:
    """The values of the shared flags of one command line (environment variables are
    folded in by typer)."""

    namespace: str | None = None
    server: str | None = None
    kubeconfig: str | None = None
    token: str | None = None
    output: Output = Output.TABLE

    def target(self) -> Target:
        return Target(
            namespace_flag=self.namespace,
            server_flag=self.server,
            kubeconfig_flag=self.kubeconfig,
            token_flag=self.token,
        )


NamespaceOpt = Annotated[
    str | None,
    typer.Option(
        "--namespace",
        "-n",
        help="Namespace of the app, endpoint or delivery (default: the kubeconfig context's).",
        show_default=False,
    ),
]
ServerOpt = Annotated[
    str | None,
    typer.Option(
        "--server",
        envvar=SERVER_ENV,
        help="URL of the delivery service (default: the dev playground's, if running).",
        show_default=False,
    ),
]
KubeconfigOpt = Annotated[
    str | None,
    typer.Option(
        "--kubeconfig",
        envvar="KUBECONFIG",
        help="Kubeconfig: its context's namespace, its user's token, the cluster for"
        " annotations and patches (default: the playground's, else ~/.kube/config).",
        show_default=False,
    ),
]
TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar=TOKEN_ENV,
        help="Bearer token for the delivery service (default: the kubeconfig user's token;"
        " needed for exec-plugin and client-certificate users, e.g. from"
        " `kubectl create token`).",
        show_default=False,
    ),
]
OutputOpt = Annotated[
    Output, typer.Option("--output", "-o", help="Output format.", case_sensitive=False)
]

# In --help order; the names are Shared's fields.
_DECLARED: dict[str, Any] = {
    "namespace": NamespaceOpt,
    "server": ServerOpt,
    "kubeconfig": KubeconfigOpt,
    "token": TokenOpt,
    "output": OutputOpt,
}
_DEFAULTS = Shared()
assert list(_DECLARED) == [f.name for f in fields(Shared)]
SHARED_PARAMETERS = tuple(
    inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        annotation=annotation,
        default=getattr(_DEFAULTS, name),
    )
    for name, annotation in _DECLARED.items()
)


def shared_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """`func` as typer should see it: its `Shared` parameter (if any) replaced by the five
    shared options. A function without one is returned unchanged."""
    signature = inspect.signature(func, eval_str=True)
    slot = next((p.name for p in signature.parameters.values() if p.annotation is Shared), None)
    if slot is None:
        return func
    own = [p for p in signature.parameters.values() if p.name != slot]
    clash = {p.name for p in own} & set(_DECLARED)
    if clash:
        raise TypeError(f"{func.__name__}: {sorted(clash)} would hide a shared option")

    @functools.wraps(func)
    def command(**values: Any) -> Any:
        shared = Shared(**{name: values.pop(name) for name in _DECLARED})
        return func(**values, **{slot: shared})

    visible = signature.replace(parameters=[*own, *SHARED_PARAMETERS])
    command.__signature__ = visible  # type: ignore[attr-defined]
    command.__annotations__ = {
        **{p.name: p.annotation for p in visible.parameters.values()},
        "return": signature.return_annotation,
    }
    return command
