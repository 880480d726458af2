"""Running firsttag: the CLI, the supervisor, the embedded Redis."""
