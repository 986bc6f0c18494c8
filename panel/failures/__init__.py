"""Failure groups: failed operations grouped by their cause, filed upstream once, tracked to
the fix (docs/failures.md)."""
