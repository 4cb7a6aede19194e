"""The portal's web page for customers: server-rendered HTML over the same directory and
endpoint views as the tenant API, opened with a ticket that becomes a session cookie.
`operations` and `add_static` are mounted by portal/server.py."""

from webhook_operator.portal.web.pages import add_static, operations

__all__ = ["add_static", "operations"]
