"""Makes the chatload package (beside this file) importable by loadtest/tests."""
