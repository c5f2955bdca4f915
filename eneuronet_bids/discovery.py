"""The plan of work: every T1w image of a BIDS dataset that passes the user's filters."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

#: Entities a T1w may have (BIDS 1.10), in BIDS order: they distinguish images (echoes of a
#: multi-echo MPRAGE, MP2RAGE inversions, magnitude and phase) and carry into the output names.
NAME_ENTITIES = ("subject", "session", "task", "acquisition", "ceagent", "reconstruction", "run",
                 "echo", "flip", "inv", "mt", "part", "chunk")


#: BIDS datatype folders that never hold a T1w. They are not indexed, nor are the participants
#: not selected: on a large dataset indexing everything would cost each one-subject HPC job
#: minutes (fmriprep skips these too).
NOT_ANAT_DATATYPES = ("func", "dwi", "fmap", "perf", "beh", "eeg", "ieeg", "meg", "pet", "micr",
                      "nirs", "motion", "mrs", "emg")


class DiscoveryError(ValueError):
    """The dataset or the filters select nothing usable; the message is for the user."""


@dataclass(frozen=True)
class WorkUnit:
    path: Path
    entities: dict
    metadata: dict = field(default_factory=dict, compare=False)

    @property
    def label(self) -> str:
        return self.path.name.split(".nii")[0]


def load_filter_file(path: Path) -> dict:
    """fmriprep's ``--bids-filter-file``: a JSON object whose ``t1w`` entry refines the query."""
    try:
        filters = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DiscoveryError(f"--bids-filter-file {path}: {exc}") from exc
    if not isinstance(filters, dict):
        raise DiscoveryError(f"--bids-filter-file {path}: expected a JSON object")
    t1w = filters.get("t1w", {})
    if not isinstance(t1w, dict):
        raise DiscoveryError(f"--bids-filter-file {path}: \"t1w\" must be an object of "
                             "entity: value pairs")
    scalar = (str, int, float, type(None))
    for key, value in t1w.items():
        values = value if isinstance(value, list) else [value]
        if not all(isinstance(v, scalar) for v in values):
            raise DiscoveryError(f"--bids-filter-file {path}: the value of \"{key}\" must be a "
                                 "string, number, null or a list of them")
    return t1w


def _strip(labels: list[str] | None, prefix: str) -> list[str] | None:
    return [lab.removeprefix(prefix) for lab in labels] if labels else None


def ignore_patterns(participants: list[str] | None) -> list[re.Pattern]:
    """What PyBIDS need not index, as paths relative to the dataset root with a leading ``/``.

    Only folders match (datatype folders have no ``_`` or ``.``; subject folders end at ``/``
    or the end), so the sidecars at the root and at subject or session level, which T1w
    metadata inherits from, stay indexed.
    """
    patterns = [re.compile(r"^/(code|models|sourcedata|stimuli)(/|$)"),  # PyBIDS' defaults
                re.compile(r"^/sub-[^/]+/(ses-[^/]+/)?(" + "|".join(NOT_ANAT_DATATYPES)
                           + r")(/|$)")]
    if participants:
        keep = "|".join(re.escape(p) for p in participants)
        patterns.append(re.compile(r"^/sub-(?!(" + keep + r")(/|$))[^/_.]+(/|$)"))
    return patterns


def discover(bids_dir: Path, *, participants: list[str] | None = None,
             sessions: list[str] | None = None, t1w_filter: dict | None = None,
             validate: bool = False) -> list[WorkUnit]:
    """Every T1w NIfTI that passes the filters, in a stable order."""
    from bids import BIDSLayout
    from bids.layout import BIDSLayoutIndexer, Query

    participants = _strip(participants, "sub-")
    sessions = _strip(sessions, "ses-")
    indexer = BIDSLayoutIndexer(validate=validate, ignore=ignore_patterns(participants))
    try:
        layout = BIDSLayout(str(bids_dir), validate=validate, derivatives=False, indexer=indexer)
    except Exception as exc:  # pybids raises its own BIDSValidationError and ValueError
        raise DiscoveryError(f"{bids_dir} is not a BIDS dataset: {exc}") from exc
    known = set(layout.get_subjects())
    if participants:
        missing = sorted(set(participants) - known)
        if missing:
            raise DiscoveryError(f"participant(s) not found in {bids_dir}: "
                                 f"{', '.join('sub-' + m for m in missing)}")
    query = {"datatype": "anat", "suffix": "T1w", "extension": [".nii", ".nii.gz"]}
    for key, value in (t1w_filter or {}).items():
        query[key] = Query.NONE if value is None else Query.ANY if value == "*" else value
    if participants:
        query["subject"] = participants
    if sessions:
        found = set(layout.get_sessions(subject=participants or None))
        missing = sorted(set(sessions) - found)
        if missing:
            raise DiscoveryError(f"session(s) not found in {bids_dir}: "
                                 f"{', '.join('ses-' + m for m in missing)}")
        query["session"] = sessions
    try:
        files = layout.get(return_type="object", **query)
    except ValueError as exc:  # an entity PyBIDS does not know, e.g. "acq" for "acquisition"
        raise DiscoveryError(f"--bids-filter-file: {str(exc).split('. ')[0]} (use PyBIDS' "
                             "entity names: acquisition, reconstruction, run, ...)") from exc
    units = [WorkUnit(Path(f.path),
                      {k: v for k, v in f.get_entities().items() if k in NAME_ENTITIES},
                      f.get_metadata())
             for f in files]
    if not units:
        raise DiscoveryError(f"no T1w image in {bids_dir} matches the selection")
    return sorted(units, key=lambda u: str(u.path))
