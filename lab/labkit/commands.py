"""The command line: up, down, status, criu, agents, token (and the internal _reaper)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

from .agents import start_agent, stop_agent
from .base import (
    BRIDGE,
    CRIU_MODES,
    DEFAULT_HOSTS,
    HOSTS_DIR,
    MAX_HOSTS,
    REPO,
    STATE_FILE,
    LabError,
    log,
    process_alive,
    run,
)
from .criu import ensure_criu, ensure_shim
from .daemon import ensure_host, run_reaper
from .host import Host, IncusHost, host_named, lxd_answers, lxd_get
from .image import ensure_image_files
from .network import ensure_bridge, link_exists
from .packages import ensure_incus_packages, ensure_system_packages, preflight
from .state import read_state, state_hosts, write_state
from .stopping import (
    container_names,
    known_hosts,
    lab_mounts,
    remove_stale_cgroups,
    take_down,
)
from .trust import new_trust_token


def cmd_up(args: argparse.Namespace) -> int:
    started = time.monotonic()
    preflight()
    ensure_system_packages()
    existing = state_hosts()
    count = args.hosts
    if count is None:
        count = max(DEFAULT_HOSTS, len([h for h in existing if h.kind == "lxd"]))
    incus = args.incus
    if incus is None:
        # As many as are up: those state.json names, and those whose daemon runs (a lab.py
        # that predates Incus hosts rewrites state.json without them, and must not make a
        # plain `up` stop them).
        running = [h for h in known_hosts() if process_alive(h.pid(), h.daemon)]
        incus = max((h.index for h in existing + running if h.kind == "incus"), default=0)
    if not 1 <= count <= MAX_HOSTS:
        raise LabError(f"--hosts must be at least 1 and at most {MAX_HOSTS}")
    if not 0 <= incus <= MAX_HOSTS:
        raise LabError(f"--incus must be at least 0 and at most {MAX_HOSTS}")
    if incus:
        ensure_incus_packages()
    ensure_criu()
    ensure_shim()
    meta, rootfs = ensure_image_files()
    hosts = [Host(i) for i in range(1, count + 1)]
    hosts += [IncusHost(i) for i in range(1, incus + 1)]
    for extra in known_hosts():
        if extra.kind == "lxd" and extra.index > count:
            log(take_down(extra) + " (beyond --hosts)")
        elif extra.kind == "incus" and extra.index > incus:
            log(stop_agent(extra))
            log(take_down(extra) + " (beyond --incus)")
    ensure_bridge()
    for host in hosts:
        note = ensure_host(host, meta, rootfs)
        log(f"{host.name}: {note}, {host.url}, pid {host.pid()}, criu {host.criu_mode()}")
    write_state(hosts)
    what = f"{count} hosts" + (f" and {incus} Incus hosts" if incus else "")
    log(f"lab up: {what} in {time.monotonic() - started:.1f}s; state in {STATE_FILE}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    preflight()
    hosts = sorted(
        {h.name: h for h in known_hosts() + state_hosts()}.values(),
        key=lambda h: (h.kind != "lxd", h.index),
    )
    for host in hosts:
        log(stop_agent(host))
        log(take_down(host))
    if link_exists(BRIDGE):
        run(["ip", "link", "del", BRIDGE])
    removed = remove_stale_cgroups(container_names(hosts))
    if removed:
        log(f"removed {removed} empty container cgroups")
    for point in reversed(lab_mounts()):
        run(["umount", "-l", point], check=False)
    STATE_FILE.unlink(missing_ok=True)
    if args.purge:
        shutil.rmtree(HOSTS_DIR, ignore_errors=True)
        log(f"purged {HOSTS_DIR} (download cache, CRIU prefix and image kept)")
    log("lab down")
    return 0


def host_status(host: Host) -> dict[str, object]:
    alive = process_alive(host.pid(), host.daemon)
    answering = alive and lxd_answers(host)
    instances = None
    if answering:
        _, body = lxd_get(host, "/1.0/instances")
        instances = len(body.get("metadata") or [])
    # "lxd_answering" for an LXD host, "incus_answering" for an Incus host.
    return {"pid_alive": alive, f"{host.kind}_answering": answering, "instances": instances}


def cmd_status(args: argparse.Namespace) -> int:
    state = read_state()
    if state is None:
        if args.json:
            print(json.dumps({"hosts": [], "up": False}, indent=2))
        else:
            print("lab is down (no var/lab/state.json); run: python3 lab/lab.py up")
        return 1
    healthy = True
    state.setdefault("incus_hosts", [])
    for entry in state["hosts"] + state["incus_hosts"]:
        host = host_named(entry["name"])
        assert host is not None
        entry.update(host_status(host))
        entry["criu"] = host.criu_mode()
        healthy = healthy and bool(entry[f"{host.kind}_answering"])
    state["up"] = healthy
    if args.json:
        print(json.dumps(state, indent=2))
        return 0 if healthy else 1
    print(f"bridge {state['bridge']} {state['bridge_address']}, image alias {state['image_alias']}")
    for kind, entries in (("lxd", state["hosts"]), ("incus", state["incus_hosts"])):
        if kind == "incus" and not entries:
            continue
        print(
            f"{'host':<7} {'address':<12} {'pid':>8} {'alive':<6} {kind:<6} {'criu':<6} instances"
        )
        for e in entries:
            print(
                f"{e['name']:<7} {e['address']:<12} {e['pid'] or '-':>8} "
                f"{'yes' if e['pid_alive'] else 'NO':<6} "
                f"{'yes' if e[f'{kind}_answering'] else 'NO':<6} "
                f"{e['criu']:<6} {'-' if e['instances'] is None else e['instances']}"
            )
    return 0 if healthy else 1


def lab_host(name: str) -> Host:
    hosts = {h.name: h for h in state_hosts()}
    if name not in hosts:
        raise LabError(f"unknown host {name!r}; lab hosts: {', '.join(hosts) or 'none'}")
    return hosts[name]


def cmd_criu(args: argparse.Namespace) -> int:
    host = lab_host(args.host)
    host.set_criu_mode(args.mode)  # read by the shim at each call: takes effect immediately
    write_state(state_hosts())
    log(f"{host.name}: criu {args.mode}")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    """A fresh single-use trust token, alone on stdout (for scripts and tests)."""
    host = lab_host(args.host)
    if not lxd_answers(host):
        raise LabError(f"{host.name}: {host.daemon} does not answer; run `lab.py up` first")
    print(new_trust_token(host, args.name), flush=True)
    return 0


def cmd_agents(args: argparse.Namespace) -> int:
    # Incus hosts only when asked for (--incus, or by name): their agents run with
    # PANEL_AGENT_LAYOUT=incus, which a panel without that layout refuses at start. `stop`
    # stops them all.
    def wanted(host: Host) -> bool:
        if args.host:
            return host.name in args.host
        return host.kind == "lxd" or args.incus or args.action == "stop"

    hosts = [h for h in state_hosts() if wanted(h)]
    if not hosts:
        raise LabError("no lab hosts: run `lab.py up` first (or check --host)")
    for host in hosts:
        if args.action == "start":
            log(start_agent(host, args.python, args.redis_url))
        else:
            log(stop_agent(host))
    write_state(state_hosts())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="lab.py", description="Real LXD and Incus hosts with CRIU for the panel's tests."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    up = commands.add_parser("up", help="bring the lab up (idempotent)")
    up.add_argument(
        "--hosts",
        type=int,
        default=None,
        help=f"number of LXD hosts (default {DEFAULT_HOSTS}, or as many as are up)",
    )
    up.add_argument(
        "--incus",
        type=int,
        default=None,
        help="number of Incus hosts (default: as many as are up, none at first)",
    )
    up.set_defaults(func=cmd_up)
    down = commands.add_parser("down", help="stop every daemon, container and namespace")
    down.add_argument(
        "--purge",
        action="store_true",
        help="also delete the host trees (containers, images, config)",
    )
    down.set_defaults(func=cmd_down)
    status = commands.add_parser("status", help="show hosts and liveness")
    status.add_argument("--json", action="store_true", help="state.json plus liveness, as JSON")
    status.set_defaults(func=cmd_status)
    criu = commands.add_parser("criu", help="switch a host between stock and fixed CRIU")
    criu.add_argument("host", metavar="HOST", help="host1, host2, ..., incus1, ...")
    criu.add_argument("mode", choices=CRIU_MODES, metavar="stock|fixed")
    criu.set_defaults(func=cmd_criu)
    agents = commands.add_parser("agents", help="start or stop the panel's agent on lab hosts")
    agents.add_argument("action", choices=("start", "stop"))
    agents.add_argument(
        "--python",
        default=str(REPO / ".venv" / "bin" / "python"),
        help="the virtualenv python (default .venv/bin/python)",
    )
    agents.add_argument(
        "--redis-url",
        # From the environment by default, so a password stays off the command line.
        default=os.environ.get("PANEL_REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="the panel's Redis (default: $PANEL_REDIS_URL, else redis://127.0.0.1:6379/0)",
    )
    agents.add_argument("--host", action="append", help="only this host (repeatable)")
    agents.add_argument(
        "--incus",
        action="store_true",
        help="start: the Incus hosts' agents too (PANEL_AGENT_LAYOUT=incus)",
    )
    agents.set_defaults(func=cmd_agents)
    token = commands.add_parser("token", help="print a new single-use trust token of a host")
    token.add_argument("host", metavar="HOST", help="incus1, incus2, ... (or host1, ...)")
    token.add_argument("--name", help="the client's name in the trust store (default: random)")
    token.set_defaults(func=cmd_token)
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_reaper"] and len(argv) == 2:  # internal: see run_reaper
        host = host_named(argv[1])
        return run_reaper(host) if host is not None else 2
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except LabError as error:
        print(f"lab: {error}", file=sys.stderr)
        return 1
