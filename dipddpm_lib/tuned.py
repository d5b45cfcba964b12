"""Tuned settings: what a grid may tune, and the ``results/<profile>/tuned.json`` that the
collate step (:func:`dipddpm_lib.collate.collate_tuned`) writes and chapters 02-04 read through
their ``tuned`` parameter (:func:`tuned_overrides`). Points never read it."""
from __future__ import annotations

import json
from pathlib import Path

from .cache import atomic_write_json
from .errors import check_choice
from .profiles import PROFILES
from .results import format_value, markdown_table


DIP_CHAPTERS = ("02_dip_baseline", "04_early_stopping")  # both fit the profile's DIP net
ES_CHAPTERS = ("04_early_stopping",)
PHOTO_CHAPTERS = ("03_dip_init_ddpm",)  # task C: DDPM × DIP on photographs
#: The settings a grid may choose: profile field -> (what is valid, the chapters that use it);
#: ``(lo, hi)`` of ints: a whole number in [lo, hi]; ``(0, hi)`` of a float: a number in (0, hi];
#: else the choices (``es_stage_schedule``'s are ``methods.guided_dip.STAGE_SCHEDULES``, a test
#: keeps them equal).
TUNABLE = {
    "dip_scales": ((1, 8), DIP_CHAPTERS),
    "dip_channels": ((1, 1024), DIP_CHAPTERS),
    "dip_lr": ((0, 1.0), DIP_CHAPTERS),
    "es_num_stages": ((2, 10_000), ES_CHAPTERS),
    "es_stage_iterations": ((1, 1_000_000), ES_CHAPTERS),
    "es_stage_schedule": (("linear", "cosine", "log"), ES_CHAPTERS),
    "es_start_ratio": ((0, 100.0), ES_CHAPTERS),
    "photo_dip_iterations": ((1, 1_000_000), PHOTO_CHAPTERS),
    "photo_red_lambda": ((0, 100.0), PHOTO_CHAPTERS),
    "photo_red_sigma_eff_ratio": ((0, 10.0), PHOTO_CHAPTERS),
    "photo_red_refresh": ((1, 1_000_000), PHOTO_CHAPTERS),
    "photo_target_lambda": ((0, 100.0), PHOTO_CHAPTERS),
}
TUNED_VERSION = 1


def check_tuned_value(field_name: str, value, where: str = "") -> object:
    """``value`` checked for the profile field it tunes (``ValueError`` naming what is valid)."""
    check_choice("tuned setting", field_name, TUNABLE)
    (lo, hi), what = TUNABLE[field_name][0][-2:], f"tuned {field_name}{where}"
    if isinstance(hi, str):
        check_choice(what, value, TUNABLE[field_name][0])
        return str(value)
    if isinstance(hi, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= hi:
            raise ValueError(f"{what} must be a number in (0, {hi:g}], got {value!r}")
        return float(value)
    if isinstance(value, bool) or not (isinstance(value, int) or isinstance(value, float)
                                       and value.is_integer()) or not lo <= value <= hi:
        raise ValueError(f"{what} must be a whole number in [{lo}, {hi}], got {value!r}")
    return int(value)


def chapters_using(fields) -> list[str]:
    """The chapters that use any of the profile ``fields`` (sorted)."""
    return sorted({ch for f in fields for ch in TUNABLE[f][1]})


def tuned_values(grid, value) -> dict:
    """The profile fields a grid's ``value`` sets; ``ValueError`` if it gives no valid setting."""
    out = {}
    for f, key in grid.tunes.items():
        if key is not None and not (isinstance(value, dict) and key in value):
            raise ValueError(f"grid {grid.name!r} tunes {f} from the key {key!r} of its values, "
                             f"but {value!r} has no such key")
        out[f] = check_tuned_value(f, value if key is None else value[key],
                                   f" (grid {grid.name!r}, value {format_value(value)})")
    return out


def write_tuned(doc: dict, path: str | Path) -> Path:
    """Write the tuned settings atomically, after checking every value."""
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
    """The tuned settings in ``path``, every value checked before any work."""
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
    """``(overrides, record)``: the profile fields a chapter takes from ``tuned`` (a path or
    ``None``), and where each of its settings came from. Precedence: ``explicit`` (field ->
    value, ``None`` = not given), the tuned file, the profile (also for an untuned setting)."""
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
    """:func:`tuned_overrides`' record as a Markdown table: setting, value, source, how."""
    rows = [{"setting": f"`{f}`", "value": format_value(e["value"]), "source": e["source"],
             "how": f"grid {e['grid']} by {e['metric']} on {', '.join(e.get('photos') or []) or '–'} "
                    f"(profile value {format_value(e['profile_value'])})"
             if e["source"] == "tuned" else e.get("note", "")} for f, e in record["settings"].items()]
    return markdown_table(rows, {k: k for k in ("setting", "value", "source", "how")})
