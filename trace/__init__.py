"""Trace files: the native Parquet format and the JSON Lines interchange format."""
