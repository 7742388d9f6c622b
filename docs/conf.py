"""Sphinx configuration for the tokenstore-sql documentation.

Build it (warnings are errors, every cross-reference must resolve)::

    .venv/bin/python docs/generate.py   # the charts and screenshots the pages show
    .venv/bin/sphinx-build -W -n --keep-going -b html docs docs/_build/html
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

import tokenstore_sql  # noqa: E402

project = "tokenstore-sql"
author = "tokenstore-sql contributors"
copyright = "tokenstore-sql contributors"
release = tokenstore_sql.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "myst_parser",
    "sphinx_copybutton",
    "sphinx_click",
    "tokenstore_schema",
    "tokenstore_refs",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence", "deflist"]

html_theme = "furo"
html_title = f"tokenstore-sql {release}"

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True

# The prompts of console examples are not copied.
copybutton_prompt_text = r"\$ |> "
copybutton_prompt_is_regexp = True

# Cross-references must all resolve (sphinx-build -n). The build does not fetch the
# intersphinx inventories of other projects: it must work offline, as CI's machine has
# no route to them. Names from these third-party packages (and the standard library)
# are therefore left unresolved on purpose; every tokenstore_sql name must resolve.
_THIRD_PARTY = (
    "sqlalchemy",
    "globus_sdk",
    "click",
    "cryptography",
    "alembic",
    "pytest",
    "_pytest",
    "psycopg",
    "pymysql",
    "aiomysql",
    "aiosqlite",
)
_STDLIB = (
    "collections",
    "concurrent",
    "contextlib",
    "datetime",
    "enum",
    "io",
    "logging",
    "os",
    "pathlib",
    "threading",
    "types",
    "typing",
    "asyncio",
    "uuid",
)
_BUILTINS = (
    "Any",
    "Callable",
    "Iterable",
    "Iterator",
    "Mapping",
    "Sequence",
    "AsyncIterator",
    "Awaitable",
    "Coroutine",
    "Literal",
    "Self",
    "TypeAlias",
    "Path",
    "TextIO",
    "IO",
    "datetime",
    "timedelta",
    "TracebackType",
    "Logger",
    "Final",
    "ClassVar",
    "UUID",
)
_PREFIXES = "|".join(_THIRD_PARTY + _STDLIB)
nitpick_ignore_regex = [
    (r"py:.*", rf"(?:{_PREFIXES})(?:\..*)?"),
    (r"py:.*", rf"(?:{'|'.join(_BUILTINS)})"),
    # globus-sdk's classes that our signatures and text name without their module.
    (
        r"py:.*",
        r"(?:TokenStorageData|TokenStorage|OAuthTokenResponse|AuthClient|Engine"
        r"|AsyncEngine|Connection|URL|MetaData|Table|Row|AuthLoginClient|GlobusAppConfig)",
    ),
    # SQLAlchemy's own docstrings, inherited by the declarative base, use its aliases.
    (r"py:.*", r"_(?:schema|orm)\..*"),
    (r"ref", r"orm_declarative_metadata"),
    # Type variables have no page of their own.
    (r"py:class", r"(?:tokenstore_sql\.retries\.)?T"),
    (r"py:class", r"(?:tokenstore_sql\.store_common\.)?(?:E|_Storage|_Fresh)"),
]

# CHANGELOG.md puts its "### Fixed" sections right under the page title, as scriv writes
# them; that heading-level jump is intended there.
suppress_warnings = ["myst.header"]
