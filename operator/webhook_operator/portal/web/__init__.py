"""The portal's web page for customers: server-rendered HTML over the same directory and
endpoint views as the tenant API, opened with a ticket that becomes a session cookie.
`pages.operations` (the pages and their static files) is mounted by portal/server.py."""
