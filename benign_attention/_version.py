"""The package's version, in a module of its own so that modules inside the package read it without
importing the package's ``__init__`` (no import arrow runs back up). It equals ``project.version`` in
pyproject.toml (``tests/test_structure.py`` checks)."""
__version__ = "0.1.0"
