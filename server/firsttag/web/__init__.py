"""The HTTP tier: parse, authenticate, hand over to admission and the buffer."""
