"""Resolve references the nitpicky build would otherwise report, in two narrow cases.

- A bare or partly qualified name (``RefreshOptions``, ``TokenStore.check``) links to
  the one documented ``tokenstore_sql`` object whose full name ends with it. Type hints
  written under ``TYPE_CHECKING`` reach autodoc this way, and module docstrings name
  their neighbours so.
- A name in an internal module that is documented without its members (see
  ``reference/internals.rst``) stays code, not a link, when the object exists: it is
  imported to check. A name that does not exist is still reported.
"""

from __future__ import annotations

import importlib
from typing import Any

from docutils import nodes
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util.nodes import make_refnode

PACKAGE = "tokenstore_sql"


def _exists(dotted: str) -> bool:
    """Whether ``dotted`` names an object of the package, by importing its module."""
    if not dotted.startswith(PACKAGE + "."):
        return False
    parts = dotted.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            found: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for attribute in parts[split:]:
                found = getattr(found, attribute)
        except AttributeError:
            return False
        return True
    return False


def _resolve(
    app: Sphinx, env: BuildEnvironment, node: pending_xref, contnode: nodes.Element
) -> nodes.Element | None:
    target = node.get("reftarget", "").lstrip("~.")
    if node.get("refdomain") != "py" or not target:
        return None
    objects = env.get_domain("py").objects  # type: ignore[attr-defined]
    found = [
        entry
        for name, entry in objects.items()
        if name.startswith(PACKAGE + ".") and name.endswith("." + target)
    ]
    if len(found) == 1:
        entry = found[0]
        return make_refnode(
            app.builder, node["refdoc"], entry.docname, entry.node_id, contnode, target
        )
    module = node.get("py:module") or ""
    candidates = [target, f"{module}.{target}"]
    if node.get("py:class"):
        candidates.append(f"{module}.{node['py:class']}.{target}")
    if any(_exists(candidate) for candidate in candidates):
        return contnode
    return None


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the resolver with Sphinx."""
    app.connect("missing-reference", _resolve)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
