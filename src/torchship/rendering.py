"""Generated text comes from the jinja2 templates in torchship/templates/, never from string pasting."""

from __future__ import annotations

from functools import cache
from typing import Any

import jinja2


@cache
def _environment(autoescape: bool) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("torchship", "templates"),
        # HTML pages escape every value (autoescape=True); other formats (config files) are validated and
        # escaped by their callers for their own syntax, where HTML escaping would corrupt them.
        autoescape=autoescape,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_template(name: str, /, *, autoescape: bool = False, **context: Any) -> str:
    """Render templates/<name> with `context`; a name the template uses but `context` lacks is an error.
    `name` is positional-only, so a template may take a variable called `name` too.

    autoescape=True HTML-escapes every value the template prints (use it for every .html template)."""
    return _environment(autoescape).get_template(name).render(**context)


def render_html(name: str, /, **context: Any) -> str:
    """Render the HTML template templates/<name>, escaping every value it prints."""
    return render_template(name, autoescape=True, **context)
