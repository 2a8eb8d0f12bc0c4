"""A Griffe extension for the API reference: Sphinx roles in docstrings read as code.

The package's docstrings name other objects the Sphinx way (``:class:`~pkg.Name```); Markdown
would show the role as text. This turns each role into a code span of the name as a reader
would write it (the last part when the target starts with ``~``). It also leaves out the
special methods a reader never calls (``__post_init__``, ``__repr__``, ...): the reference
shows what a user of the package calls.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|exc|obj|const):`(~?)([^`]+)`")


def _as_code(match: re.Match[str]) -> str:
    short, target = match.group(1), match.group(2)
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


# Special methods that are plumbing: a user never calls them by name.
_HIDDEN = frozenset({"__post_init__", "__repr__", "__str__", "__hash__", "__eq__", "__del__",
                     "__init_subclass__", "__getstate__", "__setstate__", "__reduce__"})


class SphinxRolesAsCode(griffe.Extension):
    """Rewrites ``:role:`target``` in every docstring Griffe loads into ```target```, and
    hides the plumbing special methods."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(_as_code, obj.docstring.value)
        if obj.name in _HIDDEN:
            obj.public = False
