"""The package version; pyproject.toml states the same number (tests/test_environment.py checks)."""

__version__ = "0.1.0"
