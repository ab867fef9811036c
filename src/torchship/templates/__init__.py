"""jinja2 templates of the files torchship generates (loaded by torchship.rendering); no logic here."""
