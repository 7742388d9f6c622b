"""What the tests share: servers and scratch databases, fakes, fault injection, runners.

Test modules import from here (``tests.support.<module>``), never from one another.
"""

from __future__ import annotations

from pathlib import Path

# The checkout: README.md, examples/, migrations/, benchmarks/ and .ci/ are found from it.
REPO_ROOT = Path(__file__).resolve().parent.parent.parent
