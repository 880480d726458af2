"""Alembic migrations of the SQL store: ``env.py`` and one module per revision in ``versions/``.

Run by :func:`firsttag.store.migrate` (every process on start, under a lock) and by
``firsttag migrate``; docs/migrations.md says how to add a revision.
"""
