"""The API described from the payload schemas: OpenAPI and docs/api.md."""
