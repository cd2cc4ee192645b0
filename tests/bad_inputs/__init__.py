"""Builders for the bad-input corpus (tests/test_bad_inputs.py): files made from code."""
