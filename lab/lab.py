#!/usr/bin/env python3
"""The project's test lab: N real LXD hosts with working CRIU on this one machine.

    python3 lab/lab.py up [--hosts N]     bring the lab up (idempotent; repairs what is missing)
    python3 lab/lab.py down [--purge]     stop everything; --purge also deletes the host trees
    python3 lab/lab.py status [--json]    what runs, and whether LXD answers
    python3 lab/lab.py criu HOST stock|fixed
    python3 lab/lab.py agents start|stop [--python PY] [--redis-url URL] [--host H]

Standard library only: it runs with the system python3 before any venv exists.
Why each step is done the way it is: lab/README.md.
All state lives under <repo>/var/lab/; var/lab/state.json is the contract with the project.
The code is in the package lab/labkit/, one module per part; this script only runs it.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from labkit.commands import main

if __name__ == "__main__":
    sys.exit(main())
