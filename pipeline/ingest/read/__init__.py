"""Reading untrusted CSV and XLSX files as text, in chunks: guards, tables, the two formats."""
