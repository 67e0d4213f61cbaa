"""A package, so these test modules do not clash with genzoo's own tests/test_*.py of the same names."""
