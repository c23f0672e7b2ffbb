"""A griffe extension for the API reference: ``Example:`` sections are examples, not admonitions,
and Sphinx roles (``:class:`~qubert.heads.QuantumHead```) are shown as code.

qubert's docstrings head their doctests ``Example:`` (singular); griffe's Google parser reads only
``Examples:`` as an examples section (``>>>`` lines shown as code) and renders anything else as an
admonition of Markdown text, where a doctest such as ``xs[:2]`` would even become a link.
Sphinx roles have no meaning in Markdown: ``:func:`~a.b.f``` becomes ```f```, ``:mod:`a.b``` becomes ```a.b```.
"""

from __future__ import annotations

import re

import griffe

_EXAMPLE = re.compile(r"^([ \t]*)Example:[ \t]*$", re.MULTILINE)
_ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|exc|obj):`(~?)([^`]+)`")


def _role_as_code(match: re.Match) -> str:
    short, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


class ExampleSections(griffe.Extension):
    def on_instance(self, *, obj, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(_role_as_code, _EXAMPLE.sub(r"\1Examples:", obj.docstring.value))
