"""Events on their way to the store: the Redis buffer, the drain, dead letters, readiness."""
