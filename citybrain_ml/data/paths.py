"""Where the shared datasets live and how to say so when they are not there."""

from __future__ import annotations

import os
from pathlib import Path

#: environment variable that points at the folder holding traffic/, air/, incidents/
ENV_VAR = "CITYBRAIN_SHARED_DATA"
REPO = Path(__file__).resolve().parents[2]
SAMPLES_ROOT = REPO / "data_samples"


def resolve_root(root: str | Path | None = None) -> Path:
    """The data root: ``root``, else ``$CITYBRAIN_SHARED_DATA``, else ``<repo>/../shared/data``.

    Parameters
    ----------
    root : str or Path, optional
        Folder that contains ``traffic/``, ``air/`` and ``incidents/``.

    Returns
    -------
    Path

    Raises
    ------
    FileNotFoundError
        When the folder does not exist; the message says how to point at the data.
    """
    if root is not None:
        path = Path(root)
    elif os.environ.get(ENV_VAR):
        path = Path(os.environ[ENV_VAR])
    else:
        path = REPO.parent / "shared" / "data"
    if not path.is_dir():
        raise FileNotFoundError(
            f"dataset root {path} not found. Pass root=<folder containing traffic/, air/, "
            f"incidents/>, set {ENV_VAR}, or use the bundled slices with root='{SAMPLES_ROOT}'."
        )
    return path


def dataset_file(root: str | Path | None, *parts: str) -> Path:
    """Path of one dataset file under the data root, with a clear error when it is absent."""
    path = resolve_root(root).joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(
            f"expected dataset file {path} is missing (root layout: "
            f"<root>/{'/'.join(parts)}); check root= or ${ENV_VAR}"
        )
    return path
