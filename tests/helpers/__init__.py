"""Test-only helpers (data writers, tiny fixtures); not part of the package."""
