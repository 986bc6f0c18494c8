"""The lab behind lab/lab.py, one module per part (see lab/README.md)."""
