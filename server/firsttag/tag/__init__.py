"""The JavaScript tag and its GTM forms, rendered from tag_templates/."""
