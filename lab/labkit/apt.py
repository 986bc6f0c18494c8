"""A private apt: the system's mirror, but the lab's own sources, lists and cache."""

from __future__ import annotations

from pathlib import Path

from .base import LabError


def system_mirror_uri() -> str:
    """The Debian mirror this machine's own apt sources name (never hard-coded in the repo)."""
    candidates: list[tuple[str, list[str]]] = []
    sources_d = Path("/etc/apt/sources.list.d")
    for path in sorted(sources_d.glob("*.sources")) if sources_d.is_dir() else []:
        for stanza in path.read_text().split("\n\n"):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if ":" in line and not line.lstrip().startswith("#"):
                    key, _, value = line.partition(":")
                    fields[key.strip().lower()] = value.strip()
            if "deb" in fields.get("types", "").split():
                for uri in fields.get("uris", "").split():
                    candidates.append((uri, fields.get("suites", "").split()))
    list_files = [Path("/etc/apt/sources.list")]
    if sources_d.is_dir():
        list_files += sorted(sources_d.glob("*.list"))
    for path in list_files:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            words = [w for w in line.split() if not w.startswith("[") and not w.endswith("]")]
            if len(words) >= 3 and words[0] == "deb":
                candidates.append((words[1], [words[2]]))
    for uri, suites in candidates:
        # The main archive, not the security one: that is the one that also carries trixie.
        if "security" not in uri and any(not s.endswith("-security") for s in suites):
            return uri.rstrip("/")
    raise LabError("no Debian mirror found in /etc/apt/sources.list{,.d/}")


def private_apt(folder: Path, sources: list[str]) -> list[str]:
    """apt-get options for an apt that reads only `sources` (lines of a sources.list, written
    to <folder>/sources.list) and keeps its lists, state and cache under `folder`.

    No system preferences either. The system's sources, lists and cache are left untouched;
    dpkg's status is the system's, read to know what is installed, and written only by an
    `install` (which is then a system-wide install, as intended for such a package).
    """
    state, cache = folder / "state", folder / "cache"
    for sub in (state / "lists" / "partial", cache / "archives" / "partial"):
        sub.mkdir(parents=True, exist_ok=True)
    sources_file = folder / "sources.list"
    sources_file.write_text("".join(f"{line}\n" for line in sources))
    return [
        "-o",
        f"Dir::Etc::SourceList={sources_file}",
        "-o",
        "Dir::Etc::SourceParts=/dev/null",
        "-o",
        "Dir::Etc::Preferences=/dev/null",
        "-o",
        "Dir::Etc::PreferencesParts=/dev/null",
        "-o",
        f"Dir::State={state}",
        "-o",
        f"Dir::Cache={cache}",
        "-o",
        "Acquire::Languages=none",
        # The download folder belongs to root; apt's _apt sandbox user could not write to it.
        "-o",
        "APT::Sandbox::User=root",
    ]
