"""Where the kit's own folders are: conf/, baselines/ and submissions/, in a checkout or in a wheel.

They stay top-level in the repository, where a newcomer looks for them, and are mapped into the
package when it is built (pyproject.toml's package-dir), so `pip install .` works from any folder.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def kit_path(name: str) -> Path:
    """The installed copy (inside the package) if there is one, else the checkout's top-level folder."""
    inside = PACKAGE / name
    return inside if inside.is_dir() else PACKAGE.parent / name
