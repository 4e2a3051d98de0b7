"""Whether a run of the robustness suite gave the original's answer, a clear refusal, or something else (issue 13).

One function per command reads the answer a run wrote (mask, label map, JSON, dataset case) and compares
it with the same command's answer on the group's original, within the tolerances of :data:`LEGEND`;
:func:`judge` turns exit status, stderr and that comparison into the cell's outcome. Only SimpleITK and
numpy are used, never SpineSeg's own reader, so the judge cannot share a bug with what it judges.

Console use::

    from robustness.verdicts import judge
    judge(cell, original_cell).outcome        # 'same', 'same + note', 'refused', 'DIFFERENT', 'SILENT', ...
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from robustness.corpus import NOTE_OR_REFUSE, REFUSE, SAME, Variant

#: (group, command) whose original is refused on purpose: every variant must be refused too
ORIGINAL_REFUSED = {("mr", "classical")}
BASE_CASE = "base"          # the case of the dataset that dataset add / save start from

# tolerances: (exact / crop, resampled / same-array rotated)
CLASSICAL_DICE = {"exact": 0.99, "resampled": 0.9}
CLASSICAL_QUALITY_DROP = 0.02   # resampled variants: Dice vs their own reference labels at most this much lower
IIS_DICE = {"exact": 0.95, "resampled": 0.85}
EVALUATE_DIFF = {"exact": 0.01, "resampled": 0.05}
DATASET_DICE = {"exact": 1.0, "resampled": 0.95}
NOTE_RE = re.compile(r"resampl|interpolat|series|missing|slice|overlap|grid|warning|note|mapped|chose|skipp",
                     re.IGNORECASE)
LEGEND = f"""\
Outcomes: same = the original's answer within the tolerance; same + note = and said what it did (a line the
original's run does not print, e.g. 'spineseg: note: ...' or a dataset version warning); refused = exit 2 and
one stderr line 'spineseg: error: ...' (progress lines '[ nn%] ...' aside). Failures: DIFFERENT (accepted, other
answer); SILENT (accepted what must be refused, or without the note it needs); REFUSED (refused what it must
handle); WRONG REASON (refused, but the message does not name the variant's problem, e.g. 'no spine found' for
a truncated file); UNCLEAR (exit 2 with more than the one line, e.g. ITK's own warnings); CRASHED (traceback,
other exit status, time-out); NO BASELINE (the original failed). '.' = not run.
Same answer (exact = same voxels or a crop of them; resampled = thick slices, oblique, full-resolution labels):
  classical: Dice of the spine mask, mapped onto the original's grid (nearest neighbour; exact for exact variants;
    crops: the original's mask onto the crop; 'oblique': index by index), vs the original's mask
    >= {CLASSICAL_DICE['exact']} exact, >= {CLASSICAL_DICE['resampled']} x F resampled, F = Dice of the original's mask
    mapped onto the variant's grid and back (what a perfect answer could reach: ~0.90 for 5 mm slices); or, for
    resampled variants, a Dice against the variant's own reference labels at most {CLASSICAL_QUALITY_DROP} below
    the original's (other axial slices: the mask lies a little elsewhere, equally good);
  iis: the same vertebra ids, and per vertebra Dice >= {IIS_DICE['exact']} exact, >= {IIS_DICE['resampled']} x F resampled
    (F per vertebra, as above);
  evaluate: per reference vertebra the same status and Dice within {EVALUATE_DIFF['exact']} exact,
    {EVALUATE_DIFF['resampled']} resampled ('empty': every vertebra missed, Dice 0);
  dataset: the case's stored label map equal to the original's (per id Dice >= {DATASET_DICE['resampled']}
    resampled), the stored image equal to the original's (within 0.5; not checked for resampled variants),
    the same modality.
An experimental model (its card says so) may give another answer when its run warned that its output is not
reliable: 'differs, model warned' (the bundled CT model; see its card).
Needs a note (or a refusal): a DICOM folder with two series or a missing slice, labels on another grid.
Must be refused: truncated files, NaNs, an unrelated label map."""


@dataclass
class Cell:
    variant: Variant
    command: str
    folder: Path               # where this run writes
    corpus: Path               # the corpus root
    argv: list = field(default_factory=list)
    rc: int | None = None
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0
    outcome: str = "."
    detail: str = ""

    @property
    def key(self) -> str:
        return f"{self.variant.key} x {self.command}"

    @property
    def ok(self) -> bool:
        return self.outcome in ("same", "same + note", "refused", "differs, model warned", ".")


# -- reading answers -------------------------------------------------------------------------------------
def _read(path: Path) -> sitk.Image:
    return sitk.ReadImage(str(path))


def onto(src: sitk.Image, grid: sitk.Image, by_index: bool, default: float = 0) -> np.ndarray:
    """``src``'s values on ``grid``'s voxels: nearest neighbour in physical space (exact where voxel centres
    coincide), or index by index for the same-array variants."""
    if by_index:
        if src.GetSize() != grid.GetSize():
            raise ValueError(f"index comparison needs the same size: {src.GetSize()} vs {grid.GetSize()}")
        return sitk.GetArrayFromImage(src)
    out = sitk.Resample(src, grid, sitk.Transform(), sitk.sitkNearestNeighbor, default, src.GetPixelID())
    return sitk.GetArrayFromImage(out)


def dice_per_id(a: np.ndarray, b: np.ndarray) -> dict:
    """{id: Dice} for every non-zero id of ``a`` or ``b`` (integer label arrays of one shape)."""
    a, b = a.astype(np.int64).ravel(), b.astype(np.int64).ravel()
    top = int(max(a.max(initial=0), b.max(initial=0))) + 1
    na, nb = np.bincount(a, minlength=top), np.bincount(b, minlength=top)
    both = np.bincount(a[a == b], minlength=top)
    return {i: 2 * both[i] / (na[i] + nb[i]) for i in range(1, top) if na[i] + nb[i]}


def binary_dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    total = int(a.sum() + b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def _tol(v: Variant, table: dict) -> float:
    return table["exact" if v.geometry in ("exact", "crop") else "resampled"]


def _by_index(v: Variant) -> bool:
    return v.geometry == "same-array"


PROGRESS_RE = re.compile(r"^\[\s*\d+%\]")


def _normalised(cell: Cell) -> list:
    """Output lines with paths, the variant's name and numbers blanked (to tell a note from the usual output)."""
    out = []
    for line in (cell.stdout + "\n" + cell.stderr).splitlines():
        line = line.strip()
        if not line or PROGRESS_RE.match(line) or _itk_noise(line):
            continue
        bare = re.sub(r"\S*/\S*", "<path>", line).replace(cell.variant.name, "<case>")
        out.append((line, re.sub(r"\d+(\.\d+)?", "#", bare)))
    return out


def _notes(cell: Cell, base: Cell) -> list:
    """SpineSeg's own lines that say what it did and that the original's run does not print (not progress,
    not ITK's C++ warnings)."""
    usual = {bare for _, bare in _normalised(base)}
    return [line for line, bare in _normalised(cell) if bare not in usual and NOTE_RE.search(bare)]


def _itk_noise(line: str) -> bool:
    """ITK's own C++ warnings (e.g. 'WARNING: In .../itkImageSeriesReader.hxx, line 502' and the line after it)."""
    return line.startswith("WARNING: In ") or re.match(r"^\w+ \(0x[0-9a-fA-F]+\): ", line) is not None


def _vertebra_names(ids) -> str:
    names = {**{i: f"C{i}" for i in range(1, 8)}, **{i: f"T{i - 7}" for i in range(8, 20)},
             **{i: f"L{i - 19}" for i in range(20, 26)}, 26: "S1", 28: "T13"}
    return ",".join(names.get(int(i), str(int(i))) for i in sorted(ids)) or "none"


# -- same answer? (one function per command: (same, what was compared)) ------------------------------------
def answers(cell: Cell, base: Cell, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(the variant's answer, the original's, the best a perfect answer could match) as arrays on one grid.

    The variant's answer is mapped onto the original's grid (nearest neighbour; exact for exact variants),
    except for crops (the original's answer onto the crop) and same-array variants (index by index). For
    resampled variants the third array is the original's answer mapped onto the variant's grid and back: the
    tolerances apply relative to its agreement with the original (the round trip alone costs ~10 % Dice for
    5 mm slices); otherwise it is the original's answer itself."""
    got, want = _read(cell.folder / name), _read(base.folder / name)
    if cell.variant.geometry == "crop":
        arr = onto(want, got, False)
        return sitk.GetArrayFromImage(got), arr, arr
    want_arr = sitk.GetArrayFromImage(want)
    if cell.variant.geometry != "resampled":
        return onto(got, want, _by_index(cell.variant)), want_arr, want_arr
    there = sitk.Resample(want, got, sitk.Transform(), sitk.sitkNearestNeighbor, 0, want.GetPixelID())
    return onto(got, want, False), want_arr, onto(there, want, False)


def compare_classical(cell: Cell, base: Cell) -> tuple[bool, str]:
    got, want, best = answers(cell, base, "mask.nii.gz")
    floor = binary_dice(best, want)
    d, tol = binary_dice(got, want), _tol(cell.variant, CLASSICAL_DICE) * floor
    what = f"spine Dice {d:.3f} vs the original's mask (tolerance >= {tol:.3f}"
    what += f" = {_tol(cell.variant, CLASSICAL_DICE)} x {floor:.3f} after the round trip)" if floor < 1 else ")"
    if cell.variant.geometry != "exact":   # how good either answer is, against its own reference labels
        labels = lambda c: sitk.GetArrayFromImage(_read(c.corpus / c.variant.labels))   # noqa: E731
        mask = lambda c: sitk.GetArrayFromImage(_read(c.folder / "mask.nii.gz"))   # noqa: E731
        what += (f"; vs the reference labels {binary_dice(mask(cell), labels(cell)):.3f} "
                 f"(original {binary_dice(mask(base), labels(base)):.3f})")
    if d >= tol or cell.variant.geometry != "resampled":
        return d >= tol, what
    # a resampled scan is cut into other axial slices, so the per-slice method draws its mask a little elsewhere:
    # the same answer then means the same quality against the variant's own reference labels
    quality, original = binary_dice(mask(cell), labels(cell)), binary_dice(mask(base), labels(base))
    return quality >= original - CLASSICAL_QUALITY_DROP, what + f" (quality within {CLASSICAL_QUALITY_DROP})"


def _instances_matched(got: np.ndarray, want: np.ndarray) -> str:
    """How many of the original's vertebrae some vertebra of the variant covers (Dice > 0.5), whatever its id."""
    if not want.any():
        return ""
    pairs = np.stack([want.ravel(), got.ravel()])[:, (want.ravel() > 0) | (got.ravel() > 0)].astype(np.int64)
    combos, counts = np.unique(pairs, axis=1, return_counts=True)
    size_w = dict(zip(*np.unique(want[want > 0], return_counts=True)))
    size_g = dict(zip(*np.unique(got[got > 0], return_counts=True)))
    best = {}
    for (w, g), n in zip(combos.T, counts):
        if w and g:
            best[w] = max(best.get(w, 0), 2 * n / (size_w[w] + size_g[g]))
    matched = sum(d > 0.5 for d in best.values())
    return f" (whatever the ids, {matched} of the original's {len(size_w)} vertebrae covered with Dice > 0.5)"


def compare_iis(cell: Cell, base: Cell) -> tuple[bool, str]:
    got, want, best = answers(cell, base, "labels.nii.gz")
    ids_got, ids_want = set(np.unique(got)) - {0}, set(np.unique(best)) - {0}
    if ids_got != ids_want:
        return False, (f"vertebrae {_vertebra_names(ids_got)}; the original's: {_vertebra_names(ids_want)}"
                       + _instances_matched(got, want))
    if not ids_got:
        return True, "no vertebra, as the original"
    dice, floor = dice_per_id(got, want), dice_per_id(best, want)
    tol = _tol(cell.variant, IIS_DICE)
    margin = {i: dice[i] - tol * floor[i] for i in ids_got}
    worst = min(margin, key=margin.get)
    relative = f" x {floor[worst]:.3f} after the round trip" if floor[worst] < 1 else ""
    return margin[worst] >= 0, (f"{len(ids_got)} vertebrae as the original's; {_vertebra_names([worst])} Dice "
                                f"{dice[worst]:.3f} (tolerance >= {tol}{relative}); median Dice "
                                f"{np.median([dice[i] for i in ids_got]):.3f}")


def _vertebrae(path: Path) -> dict:
    result = json.loads(path.read_text(encoding="utf-8"))
    return {e["ref_id"]: e for case in result["cases"] for e in case.get("vertebrae", [])}


def compare_evaluate(cell: Cell, base: Cell) -> tuple[bool, str]:
    want = _vertebrae(base.folder / "result.json")
    result = json.loads((cell.folder / "result.json").read_text(encoding="utf-8"))
    if cell.variant.content == "empty":
        if result.get("mode") == "binary":     # auto mode: an empty prediction has fewer than two ids
            return result.get("dsc") == 0, f"binary mode, spine Dice {result.get('dsc')} (expected 0)"
        got = _vertebrae(cell.folder / "result.json")
        hits = [i for i in want if got.get(i, {}).get("dice") or got.get(i, {}).get("detected")]
        if set(got) != set(want) or hits:
            return False, f"expected every reference vertebra missed; listed {len(got)}, Dice > 0 for {len(hits)}"
        return True, f"all {len(want)} reference vertebrae missed, Dice 0"
    got = _vertebrae(cell.folder / "result.json")
    if set(got) != set(want):
        return False, f"reference vertebrae {_vertebra_names(got)}; the original's: {_vertebra_names(want)}"
    tol = _tol(cell.variant, EVALUATE_DIFF)
    worst = max(want, key=lambda i: abs((got[i]["dice"] or 0) - (want[i]["dice"] or 0)))
    diff = abs((got[worst]["dice"] or 0) - (want[worst]["dice"] or 0))
    status = [i for i in want if got[i]["status"] != want[i]["status"]]
    if status:
        i = status[0]
        return False, f"{_vertebra_names([i])}: status {got[i]['status']!r}, the original's {want[i]['status']!r}"
    return diff <= tol, (f"{len(want)} vertebrae, largest Dice difference {diff:.3f} ({_vertebra_names([worst])}; "
                         f"tolerance {tol})")


def stored_case(cell: Cell) -> tuple[dict, Path]:
    """The manifest and folder of the case the dataset command wrote."""
    ds = cell.folder / "ds"
    names = sorted(p.stem for p in (ds / "cases").glob("*.json"))
    if cell.command == "dataset save":
        name = BASE_CASE
    else:
        names = [n for n in names if n != BASE_CASE]
        if len(names) != 1:
            raise ValueError(f"expected one new case, found {names}")
        name = names[0]
    return json.loads((ds / "cases" / f"{name}.json").read_text(encoding="utf-8")), ds


def _stored(cell: Cell) -> tuple[dict, sitk.Image, sitk.Image, list]:
    manifest, ds = stored_case(cell)
    version = next(v for v in manifest["versions"] if v["version"] == manifest["current"])
    return manifest, _read(ds / manifest["image"]), _read(ds / version["file"]), version.get("warnings", [])


def _image_difference(image: sitk.Image, base_image: sitk.Image, by_index: bool) -> float:
    """Largest absolute difference between a stored image and the original's on its voxels (NaN counts as inf)."""
    pixels = sitk.Cast(image, sitk.sitkFloat64)
    base = sitk.Cast(base_image, sitk.sitkFloat64)
    inside = onto(base * 0 + 1, pixels, by_index, 0) > 0
    diff = np.abs(sitk.GetArrayFromImage(pixels) - onto(base, pixels, by_index, 0))[inside]
    return float(np.nan_to_num(diff, nan=np.inf).max(initial=0))


def compare_dataset(cell: Cell, base: Cell) -> tuple[bool, str]:
    v = cell.variant
    manifest, image, labels, _ = _stored(cell)
    base_manifest, base_image, base_labels, _ = _stored(base)
    got = sitk.GetArrayFromImage(labels)
    want = onto(base_labels, labels, _by_index(v)) if v.content != "empty" else np.zeros_like(got)
    problems, facts = [], []
    if v.geometry == "resampled":
        dice = dice_per_id(got, want)
        low = {i: d for i, d in dice.items() if d < DATASET_DICE["resampled"]}
        if low:
            i = min(low, key=low.get)
            problems.append(f"stored label {_vertebra_names([i])} Dice {low[i]:.3f} vs the original's "
                            f"(>= {DATASET_DICE['resampled']})")
        facts.append(f"stored labels per id Dice >= {min(dice.values(), default=1):.3f}")
    else:
        wrong = int(np.count_nonzero(got != want))
        if wrong:
            problems.append(f"stored label map differs from the original's in {wrong} voxels")
        diff = _image_difference(image, base_image, _by_index(v))
        if diff > 0.5:
            problems.append(f"stored image differs from the original's by up to {diff:g}")
        facts.append("stored labels and image identical")
    if manifest.get("modality") != base_manifest.get("modality"):
        problems.append(f"modality {manifest.get('modality')!r}, the original's {base_manifest.get('modality')!r}")
    return not problems, "; ".join(problems) if problems else ", ".join(facts)


COMPARE = {"classical": compare_classical, "iis": compare_iis, "evaluate": compare_evaluate,
           "dataset init": compare_dataset, "dataset add": compare_dataset, "dataset save": compare_dataset}


# -- the verdict -----------------------------------------------------------------------------------------
def _refusal(cell: Cell) -> tuple[str, str] | None:
    """(outcome, message) when the command did not finish normally, else None."""
    lines = [ln.strip() for ln in cell.stderr.splitlines() if ln.strip() and not PROGRESS_RE.match(ln.strip())]
    last = lines[-1] if lines else "(no message)"
    if cell.rc is None:
        return "CRASHED", cell.stderr.strip()
    if "Traceback (most recent call last)" in cell.stderr:
        return "CRASHED", f"traceback: {last}"
    if cell.rc == 2:
        if len(lines) == 1 and lines[0].startswith("spineseg: error:"):
            return "refused", lines[0]
        return "UNCLEAR", f"exit 2 with {len(lines)} stderr lines: " + " | ".join(lines[-3:])
    if cell.rc != 0:
        return "CRASHED", f"exit status {cell.rc}: {last}"
    return None


def judge(cell: Cell, base: Cell | None) -> Cell:
    v, pair = cell.variant, (cell.variant.group, cell.command)
    refused = _refusal(cell)
    if refused:
        outcome, cell.detail = refused
        must_work = v.expect == SAME and pair not in ORIGINAL_REFUSED
        if outcome == "refused" and must_work:
            outcome = "REFUSED"
        elif (outcome == "refused" and v.reason and (pair not in ORIGINAL_REFUSED or v.geometry == "broken")
              and not re.search(v.reason, cell.detail, re.IGNORECASE)):
            outcome = "WRONG REASON"
        cell.outcome = outcome
        return cell
    if pair in ORIGINAL_REFUSED:
        cell.outcome, cell.detail = "SILENT", "accepted, but the original is refused"
        return cell
    if base is None or base.rc != 0:
        cell.outcome, cell.detail = "NO BASELINE", "the original failed, nothing to compare with"
        return cell
    try:
        same, what = COMPARE[cell.command](cell, base)
    except Exception as exc:   # an answer that cannot be read or compared is not the same answer
        same, what = False, f"answer not comparable ({type(exc).__name__}: {exc})"
    notes = _notes(cell, base)
    if cell.command.startswith("dataset") and same:
        notes += [f"warning: {w}" for w in _stored(cell)[3]]
    if v.expect == REFUSE:
        cell.outcome, cell.detail = "SILENT", f"accepted (exit 0): {what}"
    elif not same and cell.command == "iis" and "experimental model" in cell.stderr:
        cell.outcome, cell.detail = "differs, model warned", what
    elif not same:
        cell.outcome, cell.detail = "DIFFERENT", what
    elif v.expect == NOTE_OR_REFUSE and not notes:
        cell.outcome, cell.detail = "SILENT", f"same answer ({what}) but no note of what was done"
    else:
        cell.outcome = "same + note" if notes and v.expect == NOTE_OR_REFUSE else "same"
        cell.detail = what + (f"; note: {notes[0]}" if notes else "")
    return cell
