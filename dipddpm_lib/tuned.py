"""Tuned settings: what a grid may tune, and the ``tuned.json`` file chapters read.

The report build's collate step (:func:`dipddpm_lib.collate.collate_tuned`) writes each setting
grid's chosen value to ``results/<profile>/tuned.json``; chapters 02-04 read it through their
``tuned`` parameter (:func:`tuned_overrides`), and fall back to the profile's value, saying so,
for a setting whose grid has no complete result. Points never read it.
"""
from __future__ import annotations

import json
from pathlib import Path

from .cache import atomic_write_json
from .errors import check_choice
from .profiles import PROFILES
from .results import format_value, markdown_table

REPO = Path(__file__).resolve().parents[1]


def _whole(lo: int, hi: int):
    def check(what: str, v) -> int:
        if isinstance(v, bool) or not (isinstance(v, int) or isinstance(v, float) and v.is_integer()) \
                or not lo <= v <= hi:
            raise ValueError(f"{what} must be a whole number in [{lo}, {hi}], got {v!r}")
        return int(v)
    return check


def _positive(hi: float):
    def check(what: str, v) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= hi:
            raise ValueError(f"{what} must be a number in (0, {hi:g}], got {v!r}")
        return float(v)
    return check


def _one_of(*choices):
    def check(what: str, v) -> str:
        check_choice(what, v, choices)
        return str(v)
    return check


DIP_CHAPTERS = ("02_dip_baseline", "04_early_stopping")  # both fit the profile's DIP net
ES_CHAPTERS = ("04_early_stopping",)
PHOTO_CHAPTERS = ("03_dip_init_ddpm",)  # task C: DDPM × DIP on photographs
#: The settings a grid may choose: profile field -> (its check, the chapters that use it).
#: ``es_stage_schedule``'s choices are ``methods.guided_dip.STAGE_SCHEDULES`` (a test keeps them equal).
TUNABLE = {
    "dip_scales": (_whole(1, 8), DIP_CHAPTERS),
    "dip_channels": (_whole(1, 1024), DIP_CHAPTERS),
    "dip_lr": (_positive(1.0), DIP_CHAPTERS),
    "es_num_stages": (_whole(2, 10_000), ES_CHAPTERS),
    "es_stage_iterations": (_whole(1, 1_000_000), ES_CHAPTERS),
    "es_stage_schedule": (_one_of("linear", "cosine", "log"), ES_CHAPTERS),
    "es_start_ratio": (_positive(100.0), ES_CHAPTERS),
    "photo_dip_iterations": (_whole(1, 1_000_000), PHOTO_CHAPTERS),
    "photo_red_lambda": (_positive(100.0), PHOTO_CHAPTERS),
    "photo_red_sigma_eff_ratio": (_positive(10.0), PHOTO_CHAPTERS),
    "photo_red_refresh": (_whole(1, 1_000_000), PHOTO_CHAPTERS),
    "photo_target_lambda": (_positive(100.0), PHOTO_CHAPTERS),
}
TUNED_VERSION = 1


def tuned_path(profile: str, root: str | Path | None = None) -> Path:
    """Where the collate step writes a profile's tuned settings: ``results/<profile>/tuned.json``."""
    return Path(root) / "tuned.json" if root is not None else REPO / "results" / profile / "tuned.json"


def check_tuned_value(field_name: str, value, where: str = "") -> object:
    """``value`` checked for the profile field it tunes (``ValueError`` naming the valid range
    or choices, and the unknown field's valid names)."""
    check_choice("tuned setting", field_name, TUNABLE)
    return TUNABLE[field_name][0](f"tuned {field_name}{where}", value)


def tuned_values(grid, value) -> dict:
    """The profile fields a grid's ``value`` sets (``grid``: a :class:`~dipddpm_lib.sweep.Grid`;
    ``{}`` for a grid that tunes nothing); ``ValueError`` if the value gives no valid setting."""
    out = {}
    for f, key in grid.tunes.items():
        if key is None:
            v = value
        elif isinstance(value, dict) and key in value:
            v = value[key]
        else:
            raise ValueError(f"grid {grid.name!r} tunes {f} from the key {key!r} of its values, "
                             f"but {value!r} has no such key")
        out[f] = check_tuned_value(f, v, f" (grid {grid.name!r}, value {format_value(value)})")
    return out


def write_tuned(doc: dict, path: str | Path) -> Path:
    """Write the tuned settings (atomically: a temporary file renamed into place), after
    checking every value."""
    path = Path(path)
    _check_tuned_doc(doc, path, doc.get("profile"))
    atomic_write_json(path, doc)
    return path


def _check_tuned_doc(doc, path: Path, profile: str | None) -> dict:
    if not isinstance(doc, dict) or not isinstance(doc.get("settings"), dict):
        raise ValueError(f"{path}: not a tuned-settings file (expected a JSON object with "
                         f"'settings'; write it with dipddpm_lib.collate.collate_tuned)")
    if doc.get("version") != TUNED_VERSION:
        raise ValueError(f"{path}: tuned-settings version {doc.get('version')!r}, expected "
                         f"{TUNED_VERSION}; rerun the collate step")
    if profile is not None and doc.get("profile") != profile:
        raise ValueError(f"{path}: tuned for profile {doc.get('profile')!r}, not {profile!r}")
    for f, entry in doc["settings"].items():
        if not isinstance(entry, dict) or "value" not in entry:
            raise ValueError(f"{path}: setting {f!r} has no 'value'")
        check_tuned_value(f, entry["value"], f" in {path}")
    for f in doc.get("untuned") or {}:
        check_choice(f"untuned setting in {path}", f, TUNABLE)
    return doc


def read_tuned(path: str | Path, profile: str | None = None) -> dict:
    """The tuned settings in ``path``, every value checked (before any work). A missing file
    is a ``FileNotFoundError`` saying how to make it; an unreadable one, a wrong version or
    profile, an unknown setting or a value out of range is a ``ValueError``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"tuned-settings file {path} does not exist: run the tuning points and the collate "
            "step (`make report` does both), or pass tuned=None to use the profile's values")
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: unreadable tuned-settings file ({type(err).__name__}: {err})") from err
    return _check_tuned_doc(doc, path, profile)


def tuned_overrides(profile: str, tuned, chapter: str, explicit: dict | None = None
                    ) -> tuple[dict, dict]:
    """``(overrides, record)`` for a chapter: the profile fields to override with tuned
    values, and for ``metrics.json`` where each setting the chapter uses came from.

    ``tuned``: a path to ``tuned.json`` or ``None`` (the profile's values). Precedence: a
    value the notebook was given explicitly (``explicit``: field -> value, ``None`` = not
    given), then the tuned file, then the profile. A setting the file lists as untuned (its
    grid failed) falls back to the profile's value and the record says so."""
    check_choice("profile", profile, PROFILES)
    base = PROFILES[profile]
    doc = None if tuned is None else read_tuned(tuned, profile)
    explicit = {k: v for k, v in (explicit or {}).items() if v is not None}
    overrides, settings, fallback = {}, {}, []
    for f, (_, chapters) in TUNABLE.items():
        if chapter not in chapters:
            continue
        if f in explicit:
            settings[f] = {"value": explicit[f], "source": "parameter",
                           "note": "set by this notebook's parameters"}
        elif doc is not None and f in doc["settings"]:
            e = doc["settings"][f]
            overrides[f] = e["value"]
            settings[f] = {"value": e["value"], "source": "tuned", "grid": e.get("grid"),
                           "metric": e.get("metric"), "photos": e.get("photos"),
                           "reason": e.get("reason"), "profile_value": getattr(base, f)}
        elif doc is not None and f in (doc.get("untuned") or {}):
            fallback.append(f)
            settings[f] = {"value": getattr(base, f), "source": "profile (fallback)",
                           "note": "not tuned: " + str(doc["untuned"][f].get("reason", "grid incomplete")),
                           "grid": doc["untuned"][f].get("grid")}
        else:
            settings[f] = {"value": getattr(base, f), "source": "profile",
                           "note": "no tuned-settings file given" if doc is None
                           else "no grid tunes it"}
    record = {"tuned_file": None if tuned is None else str(tuned),
              "tune_photos": list(doc["tune_photos"]) if doc else list(base.tune_photos),
              "settings": settings, "fallback": fallback}
    return overrides, record


def settings_table(record: dict) -> str:
    """Where a chapter's tunable settings came from (:func:`tuned_overrides`' record), as a
    Markdown table: each setting, its value, its source (tuned on which photos by which grid
    and metric, the profile's, a parameter, or the profile's as a fallback, and why)."""
    rows = []
    for f, e in record["settings"].items():
        if e["source"] == "tuned":
            how = (f"grid {e['grid']} by {e['metric']} on {', '.join(e.get('photos') or []) or '–'}"
                   f" (profile value {format_value(e['profile_value'])})")
        else:
            how = e.get("note", "")
        rows.append({"setting": f"`{f}`", "value": format_value(e["value"]), "source": e["source"],
                     "how": how})
    return markdown_table(rows, {"setting": "setting", "value": "value", "source": "source",
                                 "how": "how"})
