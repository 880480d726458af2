"""Alembic's environment: run the revisions on the connection :func:`firsttag.store.migrate` holds.

The caller passes its connection in ``config.attributes["connection"]``, already holding
the migration lock, so every process that starts at once waits for the first one and then
finds the schema at head. ``alembic`` from the command line works too
(``-x url=…``), for writing a revision with ``--autogenerate``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from firsttag.store import metadata

config = context.config


def _run(connection: object) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite alters a table by copying it; batch mode does that for ALTERs it lacks.
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


given = config.attributes.get("connection")
if given is not None:
    _run(given)
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise SystemExit("pass the database with: alembic -x url=sqlite:///firsttag.db …")
    engine = create_engine(url)
    with engine.begin() as conn:
        _run(conn)
    engine.dispose()
