"""Generated text comes from the jinja2 templates in torchship/templates/, never from string pasting."""

from __future__ import annotations

from functools import cache
from typing import Any

import jinja2


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("torchship", "templates"),
        # Not HTML: the callers validate and escape for their own formats.
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@cache
def _html_environment() -> jinja2.Environment:
    # HTML pages quote model names, texts and paths: escaped unless a template marks a value safe.
    return jinja2.Environment(
        loader=jinja2.PackageLoader("torchship", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_html(name: str, **context: Any) -> str:
    """Render the HTML template templates/<name>, escaping every value it prints."""
    return _html_environment().get_template(name).render(**context)


def render_template(name: str, **context: Any) -> str:
    """Render templates/<name> with `context`; a name the template uses but `context` lacks is an error."""
    return _environment().get_template(name).render(**context)
