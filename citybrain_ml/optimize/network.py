"""A city's own SUMO files: read a ``.sumocfg`` and locate SUMO's command-line tools.

A SUMO configuration file holds the simulation's options as XML, one element per option::

    <configuration>
      <input>
        <net-file value="grid.net.xml"/>
        <route-files value="cars.rou.xml,buses.rou.xml"/>
        <additional-files value="programs.add.xml"/>
      </input>
      <time><begin value="0"/><end value="3600"/></time>
    </configuration>

File names inside it are relative to the file's own folder (SUMO's rule). :func:`read_sumocfg`
returns them resolved, with every other option kept, so the simulation can start SUMO from
the file itself (``sumo -c``) and honour what the city configured.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

#: short option names SUMO accepts in a sumocfg, mapped to their long names
_ALIASES = {
    "n": "net-file",
    "r": "route-files",
    "a": "additional-files",
    "b": "begin",
    "e": "end",
    "c": "configuration-file",
}
_FILE_LISTS = ("route-files", "additional-files")


@dataclass(frozen=True)
class SumoConfig:
    """What a ``.sumocfg`` says, with file names resolved against its folder.

    Attributes
    ----------
    path : Path
        The configuration file.
    net_file : Path
        ``net-file``.
    route_files, additional_files : tuple of Path
        ``route-files`` and ``additional-files`` (comma-separated lists in the file).
    begin_s, end_s : float or None
        ``begin`` / ``end`` (None when not set).
    options : dict
        Every option as written (long names), including the ones above.
    """

    path: Path
    net_file: Path
    route_files: tuple[Path, ...]
    additional_files: tuple[Path, ...] = ()
    begin_s: float | None = None
    end_s: float | None = None
    options: dict[str, str] = field(default_factory=dict)


def parse_sumo_time(text: str, *, where: str = "") -> float:
    """SUMO time value in seconds: ``"3600"``, ``"3600.5"`` or ``"1:00:00"`` (d:h:m:s allowed).

    Raises
    ------
    ValueError
        Naming ``where`` when the text is not a time.
    """
    try:
        parts = [float(p) for p in str(text).strip().split(":")]
    except ValueError as exc:
        raise ValueError(f"{where}: not a time: {text!r}") from exc
    seconds = 0.0
    for part, scale in zip(reversed(parts), (1, 60, 3600, 86400), strict=False):
        seconds += part * scale
    if len(parts) > 4:
        raise ValueError(f"{where}: not a time: {text!r}")
    return seconds


def read_sumocfg(path: str | Path) -> SumoConfig:
    """Read a SUMO configuration file.

    Parameters
    ----------
    path : str or Path
        The ``.sumocfg``.

    Returns
    -------
    SumoConfig
        Net, route and additional files resolved against the file's folder; begin/end in s.

    Raises
    ------
    FileNotFoundError
        When the file, or a file it names, does not exist (the message names both).
    ValueError
        When it is not XML, names no net file, or holds a time that cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sumocfg not found: {path}")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise ValueError(f"{path}: not valid XML: {exc}") from exc
    options: dict[str, str] = {}
    # options sit in sections (<input>, <time>, ...) or, in hand-written files, at the top
    for elem in root.iter():
        value = elem.get("value", elem.get("v"))
        if elem is root or value is None:
            continue
        options[_ALIASES.get(elem.tag, elem.tag)] = value
    if "net-file" not in options:
        raise ValueError(f"{path}: no <net-file> option: a signals job needs the network")
    folder = path.parent

    def resolve(option: str, name: str) -> Path:
        file = Path(name) if Path(name).is_absolute() else folder / name
        if not file.is_file():
            raise FileNotFoundError(f"{path}: {option} {name!r} not found (looked for {file})")
        return file

    net_file = resolve("net-file", options["net-file"])
    lists = {
        option: tuple(
            resolve(option, n.strip())
            for n in options.get(option, "").replace(" ", ",").split(",")
            if n.strip()
        )
        for option in _FILE_LISTS
    }
    times = {
        key: parse_sumo_time(options[key], where=f"{path}: <{key}>") if key in options else None
        for key in ("begin", "end")
    }
    return SumoConfig(
        path=path,
        net_file=net_file,
        route_files=lists["route-files"],
        additional_files=lists["additional-files"],
        begin_s=times["begin"],
        end_s=times["end"],
        options=options,
    )


# ---------------------------------------------------------------------------- SUMO tools
def sumo_home() -> Path:
    """SUMO's install folder (``SUMO_HOME``), from the ``eclipse-sumo`` wheel when installed.

    Raises
    ------
    ImportError
        When neither the wheel nor ``SUMO_HOME`` is available.
    """
    try:
        import sumo

        os.environ.setdefault("SUMO_HOME", sumo.SUMO_HOME)
    except ImportError:
        pass
    home = os.environ.get("SUMO_HOME")
    if not home:
        raise ImportError(
            "SUMO is not installed: pip install 'citybrain_ml[sim]' (eclipse-sumo), "
            "or set SUMO_HOME"
        )
    return Path(home)


def sumo_binary(name: str) -> str:
    """Path of a SUMO program (``netconvert``, ``sumo``, ``duarouter``...)."""
    candidate = sumo_home() / "bin" / name
    if candidate.is_file():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise ImportError(f"SUMO program {name!r} not found in {candidate.parent} or on PATH")
    return found


def run_sumo_tool(args: list[str], *, what: str) -> str:
    """Run a SUMO program; on failure raise with its last error lines.

    Parameters
    ----------
    args : list of str
        Program (from :func:`sumo_binary`) and arguments.
    what : str
        What is being done, for the error message (e.g. ``"netconvert grid.osm"``).

    Returns
    -------
    str
        The program's standard error (SUMO writes warnings there).
    """
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        detail = "; ".join(lines[-5:]) or f"exit code {proc.returncode}"
        raise RuntimeError(f"{what} failed: {detail}")
    return proc.stderr
