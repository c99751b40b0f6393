"""Helpers the tests share (import as `support.<module>`; pytest puts tests/ on sys.path)."""
