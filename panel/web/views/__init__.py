"""Views read the database and enqueue work; they never talk to LXD."""
