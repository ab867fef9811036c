"""jinja2 templates (no logic here): rendered by the modules that own them."""
