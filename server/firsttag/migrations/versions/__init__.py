"""One module per schema revision, oldest first (see docs/migrations.md)."""
