"""Host maintenance (issue 21): checkpoint every running container of a host in place, or
evacuate them all to other hosts, and bring them back; the host's maintenance mode.

`models.py` (the mode, the plan), `mode.py` (what the mode refuses), `planning.py` (pure
rules: which container goes where, how, and what cannot), `gather.py` (the worker's
pre-flight of the whole plan), `parent.py` (the parent operation launching its children),
`requests.py` (what the web, the API and the shell call), `bundle.py`, `tasks.py`.
"""
