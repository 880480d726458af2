"""Field reference of every payload, rendered as Markdown from :mod:`firsttag.endpoints`.

``firsttag apidocs > docs/api.md`` writes it; a test fails when the file is stale, so
the document can never drift from what the validator enforces.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from firsttag.endpoints import ENDPOINTS, NESTED


def render() -> str:
    """The whole reference."""
    out = [
        "# Payload reference",
        "",
        "Generated from `server/firsttag/endpoints.py` and the payload models of",
        "`server/firsttag/schemas.py` by `firsttag apidocs`; do not edit by hand.",
        "Types are strict: a number sent as a string (or the reverse) is a 400.",
        "",
    ]
    sections: list[tuple[type[BaseModel], str]] = [(e.payload, e.doc_line) for e in ENDPOINTS]
    for model, where in [*sections, *NESTED]:
        schema = model.model_json_schema()
        defs = schema.get("$defs", {})
        out += [f"## {model.__name__}", "", f"`{where}`", ""]
        summary = (model.__doc__ or "").strip().splitlines()[0]
        out += [summary.split("``: ", 1)[-1], ""]
        out += ["| field | type | required | rules |", "|---|---|---|---|"]
        required = set(schema.get("required", []))
        for name, prop in schema["properties"].items():
            out.append(
                f"| `{name}` | {_type(prop, defs)} | {'yes' if name in required else 'no'} "
                f"| {_rules(prop)} |"
            )
        out.append("")
    return "\n".join(out)


def _type(prop: dict[str, Any], defs: dict[str, Any]) -> str:
    if "$ref" in prop:
        return prop["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in prop:
        kinds = [_type(p, defs) for p in prop["anyOf"] if p.get("type") != "null"]
        return " or ".join(kinds) + (" or null" if len(kinds) < len(prop["anyOf"]) else "")
    if "enum" in prop:
        return " \\| ".join(f'`"{v}"`' for v in prop["enum"])
    if "const" in prop:
        return f'`"{prop["const"]}"`'
    if prop.get("type") == "array":
        return f"array of {_type(prop.get('items', {}), defs)}"
    return str(prop.get("type", "any"))


def _rules(prop: dict[str, Any]) -> str:
    parts = []
    for p in [prop, *prop.get("anyOf", [])]:
        for key, label in (
            ("minLength", "min length"),
            ("maxLength", "max length"),
            ("minimum", "≥"),
            ("maximum", "≤"),
            ("maxItems", "max items"),
            ("minItems", "min items"),
            ("pattern", "pattern"),
        ):
            if key in p:
                value = f"`{p[key]}`" if key == "pattern" else p[key]
                parts.append(f"{label} {value}")
    if "default" in prop and prop["default"] is not None:
        parts.append(f"default `{prop['default']}`")
    if prop.get("description"):
        parts.append(prop["description"].replace("|", "\\|"))
    return "; ".join(parts)
