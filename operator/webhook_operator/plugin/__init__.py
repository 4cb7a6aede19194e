"""`kubectl webhooks`: the kubectl plugin for support staff and operators.

One module per concern, so each can be read (and tested) on its own: `errors` (exit codes),
`parsing` (pure parsing of flags and files), `options` (the flags every command shares,
declared once), `target` (which service, cluster, namespace and credentials), `client`
(HTTP to the delivery service and the portal), `kube` (the Kubernetes side), `render`
(tables and JSON) and `commands` (the typer commands tying them together)."""
