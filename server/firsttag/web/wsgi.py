"""WSGI entry point for production servers: ``granian --interface wsgi firsttag.web.wsgi:app``."""

from firsttag.web.app import create_app

app = create_app()
