"""WSGI entry point for production servers: ``granian --interface wsgi firsttag.web.wsgi:app``."""

from firsttag import logs
from firsttag.web.app import create_app

logs.configure()
app = create_app()
