"""Resolve a bare name in a signature to the one tokenstore_sql object of that name.

Type hints written under ``TYPE_CHECKING`` (``Unpack[RefreshOptions]``) reach autodoc
as bare names, which Sphinx looks up only in the current module. Where exactly one
documented ``tokenstore_sql`` object has that name, the reference goes to it; otherwise
it stays missing, and the nitpicky build says so.
"""

from __future__ import annotations

from typing import Any

from docutils import nodes
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util.nodes import make_refnode


def _resolve_bare_name(
    app: Sphinx, env: BuildEnvironment, node: pending_xref, contnode: nodes.Element
) -> nodes.Element | None:
    target = node.get("reftarget", "")
    if node.get("refdomain") != "py" or not target or "." in target:
        return None
    objects = env.get_domain("py").objects  # type: ignore[attr-defined]
    found = [
        (name, entry)
        for name, entry in objects.items()
        if name.startswith("tokenstore_sql.") and name.rsplit(".", 1)[-1] == target
    ]
    if len(found) != 1:
        return None
    _, entry = found[0]
    return make_refnode(app.builder, node["refdoc"], entry.docname, entry.node_id, contnode, target)


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the resolver with Sphinx."""
    app.connect("missing-reference", _resolve_bare_name)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
