"""Validation of mapped rows: field checks, Excel damage, repeated rows."""
