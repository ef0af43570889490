"""Outside face photos (no masks), checked: `extra=DIR[,DIR...]` read in their layouts (outside_layouts.py), each
photo once however many list files name it, labels and pixels checked, none of the competition's photos, a photo
listed with two labels left out and counted (extra_conflicts=drop) or refused, then the race and ages kept.

What becomes of them: outside_faces.py (their landmarks), outside_shots.py (seven shots with drawn masks),
outside_persons.py (training persons). The command: src/stages/extra.py (`bash run.sh extra --help`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..core import classes
from ..core.errors import closest_names
from ..core.progress import progress
from ..core.values import OUTSIDE_AGES_AUTO
from ..data.faces import file_sha1
from ..data.tables import DataError, check_images
from .outside_layouts import OutsidePhoto, cell_counts, read_folder

COMPETITION_YOUNGEST = 18  # the competition's persons are adults: extra_ages=auto where no data is known (a preview)
OLDEST = 120


@dataclass(frozen=True)
class OutsideSet:
    """The outside photos that may join training (one per content, inside the ages), checked, and what the
    others were: every photo listed is one of them or counted here (a photo named by several list files, with
    the same label, is one photo)."""
    where: str                  # the folders, for messages
    photos: list[OutsidePhoto]
    digests: list[str]          # SHA-1 of each photo's bytes
    listed: int                 # photos (files) listed, each once however many lists name it
    duplicates: int             # the same content under another name again (with the same labels)
    outside_ages: int
    conflicting: int = 0        # extra_conflicts=drop: photos (files) whose content is listed with two labels
    other_race: int = 0         # extra_race: photos of another race
    boundary: int = classes.TRUE_AGE_BOUNDARY  # the training-time >=60 edge (an age range across it: a band head
                                         # trains that photo's mask and gender only)
    conflicts: tuple[str, ...] = ()  # extra_conflicts=drop: each left-out photo's two listings, one line each
    ages: tuple[int, int] | None = None  # the ages kept (extra_ages, settled), None: all


def conflicts(photos: list[OutsidePhoto], digests: list[str]) -> tuple[list[str], set[str]]:
    """One photo (the same file, or the same bytes) listed with two labels: (a message naming both lines for
    each, the digests of such photos). Public sets have them (All-Age-Faces: the same picture under two
    names and two ages); the last listing must not silently win."""
    first: dict[str, OutsidePhoto] = {}
    problems, torn = [], set()
    for photo, digest in zip(photos, digests):
        seen = first.setdefault(digest, photo)
        if (seen.age_range, seen.gender) != (photo.age_range, photo.gender):
            names = seen.path.name if seen.path == photo.path else f"{seen.path.name} and {photo.path.name}"
            problems.append(f"{seen.line} and {photo.line}: the same photo ({names}) with two labels, "
                            f"{classes.GENDER_NAMES[seen.gender]} {seen.age} and {classes.GENDER_NAMES[photo.gender]} "
                            f"{photo.age}; keep one line (or extra_conflicts=drop leaves such photos out)")
            torn.add(digest)
    return problems, torn


def leaks(photos: list[OutsidePhoto], digests: list[str], competition: list[str]) -> list[str]:
    """An outside photo byte-identical to a competition photo (train or eval) would train on what is
    scored. Only competition photos of the same size as an outside one are hashed."""
    by_size: dict[int, list[tuple[OutsidePhoto, str]]] = {}
    for photo, digest in zip(photos, digests):
        by_size.setdefault(photo.path.stat().st_size, []).append((photo, digest))
    problems = []
    for path in competition:
        try:
            same_size = by_size.get(os.stat(path).st_size)
        except OSError:  # a missing competition photo is the data check's to report
            continue
        if same_size:
            digest = file_sha1(path)
            problems += [f"{photo.line}: {photo.path} is the competition's photo {path} (byte for byte); an outside "
                         f"photo must not be a training or eval photo" for photo, d in same_size if d == digest]
    return problems


@dataclass(frozen=True)
class OutsideRules:
    """What an outside photo must pass besides its own labels and pixels (the config keys extra_format,
    extra_ages, extra_race, extra_conflicts, age_boundary, age_head; the competition's photos it must not be)."""
    ages: tuple[int, int] | None = None
    drop_conflicts: bool = False         # extra_conflicts=drop: a photo listed with two labels is left out
    competition: tuple[str, ...] = ()    # every competition train and eval photo
    layout: str = "auto"                 # extra_format: the layout of every folder, or found from its contents
    race: str = ""                       # extra_race: only photos of this race (where the layout says)
    boundary: int = classes.TRUE_AGE_BOUNDARY  # the training-time >=60 edge (counted: age ranges across a band edge)


def read_layouts(folders: list[Path], rules: OutsideRules, problems: list[str]) -> list[OutsidePhoto]:
    """Every folder read as its layout (said, with photos per gender x band), one entry per photo and label
    (a photo several list files name with the same label is one); what is wrong to `problems`."""
    photos = []
    for folder in folders:
        before = len(problems)
        layout, listings = read_folder(folder, rules.layout, problems)
        found = first_listings(listings)
        check_race(folder, layout, found, rules.race, problems)
        if len(problems) == before:
            files = len({p.path for p in found})
            again = f" ({len(listings)} listings)" if len(listings) != files else ""
            print(f"outside photos: {folder} read as {layout}: {files} photos{again} ({cell_counts(found)})",
                  flush=True)
        photos += found
    return photos


def first_listings(listings: list[OutsidePhoto]) -> list[OutsidePhoto]:
    """Each photo and label once, at its first listing (All-Age-Faces' five lists overlap)."""
    seen: dict[tuple, OutsidePhoto] = {}
    for p in listings:
        seen.setdefault((p.path, p.age_range, p.gender, p.race), p)
    return list(seen.values())


def check_race(folder: Path, layout: str, found: list[OutsidePhoto], race: str, problems: list[str]) -> None:
    """extra_race= must be a race the folder's layout names (the races it has are said otherwise)."""
    if not race or not found:
        return
    races = sorted({p.race for p in found if p.race})
    if not races:
        problems.append(f"extra_race={race}: {folder} ({layout}) names no race; leave extra_race out")
    elif race.lower() not in {r.lower() for r in races}:
        close = " or ".join(closest_names(race, races))
        hint = f" (did you mean {close}?)" if close else ""
        problems.append(f"extra_race={race}: no photo of {folder} has that race{hint}; its races: {', '.join(races)}")


def one_band(photo: OutsidePhoto, boundary: int) -> bool:
    """Does the photo's age (a range, or exact) lie inside one age band, at the training edge and at 60? (A
    band head learns only the mask and gender of one that does not: model/losses.BandRangeLoss.)"""
    lo, hi = photo.age_range
    return not any(classes.across_bands(lo, hi, b) for b in {boundary, classes.TRUE_AGE_BOUNDARY})


def read_outside(folders: list[Path], rules: OutsideRules, problems: list[str], check_pixels: bool = True
                 ) -> OutsideSet | None:
    """The outside photos of every folder: labels, pixels, one label per photo, none of the competition's;
    what is wrong goes to `problems` (None then). Each photo file is checked and hashed once. One per content
    is kept (a content listed with two labels: left out and counted with extra_conflicts=drop), then those of
    the race, with an age inside the ages (an age range across a band edge too: see `across_bands`)."""
    before = len(problems)
    photos = read_layouts(folders, rules, problems)
    files = list(dict.fromkeys(p.path for p in photos))
    if check_pixels and len(problems) == before:
        problems += check_images(files, "checking the outside photos")
    if len(problems) > before:
        return None
    digest_of = {f: file_sha1(f) for f in progress(files, desc="hashing the outside photos", unit="img")}
    digests = [digest_of[p.path] for p in photos]
    torn_problems, torn = conflicts(photos, digests)
    if not rules.drop_conflicts:
        problems += torn_problems
    one_each = list({p.path: (p, d) for p, d in zip(photos, digests)}.values())
    problems += leaks([p for p, _ in one_each], [d for _, d in one_each], list(rules.competition))
    if len(problems) > before:
        return None
    clear = [(d, p) for d, p in zip(digests, photos) if d not in torn]
    unique = dict(clear)  # the same photo twice is one person
    raced = {d: p for d, p in unique.items() if not rules.race or p.race.lower() == rules.race.lower()}
    kept = {d: p for d, p in raced.items()
            if rules.ages is None or rules.ages[0] <= p.age_range[0] <= p.age_range[1] <= rules.ages[1]}
    torn_files = sum(digest_of[f] in torn for f in files)
    return OutsideSet(where=",".join(map(str, folders)), photos=list(kept.values()), digests=list(kept),
                      listed=len(files), duplicates=len(files) - torn_files - len(unique),
                      outside_ages=len(raced) - len(kept), conflicting=torn_files, other_race=len(unique) - len(raced),
                      boundary=rules.boundary, conflicts=tuple(torn_problems) if rules.drop_conflicts else (),
                      ages=rules.ages)


def checked_outside(folders: list[Path], rules: OutsideRules = OutsideRules()) -> OutsideSet:
    """read_outside, its problems raised as one DataError."""
    problems: list[str] = []
    outside = read_outside(folders, rules, problems)
    if problems:
        raise DataError("the outside photos (extra=)", problems)
    return outside


def settled_ages(setting, youngest: int | None) -> tuple[int, int] | None:
    """extra_ages as applied: auto -> from the competition data's youngest person (`youngest`; the competition's
    18 where no data is known) up; a range, or None (all), as it is."""
    if setting != OUTSIDE_AGES_AUTO:
        return setting
    return (COMPETITION_YOUNGEST if youngest is None else int(youngest), OLDEST)


def outside_rules(cfg, competition: list[str] = (), youngest: int | None = None) -> OutsideRules:
    """The rules of a config's extra_* keys; `youngest`: the competition data's youngest person (extra_ages=auto)."""
    return OutsideRules(ages=settled_ages(cfg.extra_ages, youngest), drop_conflicts=cfg.extra_conflicts == "drop",
                        competition=tuple(competition), layout=cfg.extra_format, race=cfg.extra_race,
                        boundary=cfg.age_boundary)
