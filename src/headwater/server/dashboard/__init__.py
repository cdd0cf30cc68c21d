"""The dashboard: server-rendered pages (Jinja2 + htmx) on the API's port."""
