"""Dataset readers for IIS training: each lists the cases of a dataset as :class:`Case` records --
paths, modality and the *label convention* (``iis.train.conventions``) that says how the values in
the label file map onto SpineSeg's VerSe ids. Nothing is read until ``iis.train.prepared.prepare_case``
maps a case onto the model grid.

Readers (``read_dataset(kind, root)``; ``KINDS`` lists them):

=================  ==========================================================================
kind               layout accepted
=================  ==========================================================================
``ctspine1k``      ``data/<subset>/<case>.nii.gz`` with ``label*/**/<case>_seg.nii.gz`` (the
                   official release; the label sub-folder names do not matter), or one flat folder
                   with ``<case>.nii.gz`` + ``<case>_seg.nii.gz``. Labels 1-25 = C1-L6 (VerSe ids).
``verse``          BIDS names anywhere under root: ``<stem>_seg-vert_msk.nii.gz`` + ``<stem>_ct.nii.gz``
                   (``rawdata/`` + ``derivatives/`` or side by side), centroids
                   ``<stem>_seg-subreg_ctd.json`` / ``<stem>_seg-vert_ctd.json``. Labels 1-25, 28 (T13).
``spider``         ``images/<id>.mha`` + ``masks/<id>.mha``: vertebrae numbered bottom-up (1 = the most
                   caudal, usually L5; the sacrum is not labelled), 100 = spinal canal, 200 + k = the disc
                   below vertebra k. ``lowest="L5"`` (default) names vertebra 1 L5; ``lowest=None``
                   keeps the relative order only (then the label head gets no target).
``folder``         a generic folder of pairs, see ``discovery.find_pairs``; ``convention`` says what the
                   label values mean.
``myosegmentum``   ``NN_img`` + ``NN_vb``: 1-5 = L1-L5 from the top (``top-down:L1``).
``zukic``          ``NN_img`` + ``NN_vb``: 7 vertebral bodies with ids in arbitrary order. They are
                   sorted by height and the lowest is taken to be L5 (``by-position:L5``): in all 17
                   scans the sacrum lies directly below the lowest labelled body, so they cover T11-L5.
``discs``          ``NN_img`` + ``NN_ivd``: 1 = L5/S1 ... 5 = L1/L2 (discs only, no vertebrae).
``synthetic-ct``   a folder of vertebra label maps (e.g. VerSe masks): ``variants`` CT-like images are
                   painted around each (``iis.train.synthetic_ct``), made once into a cache folder.
``tptbox``         TPTBox layout ``<case>/image.nii.gz`` + ``<case>/vertebrae.nii.gz``: VerSe ids,
                   100 + v = disc below v, 200 + v = endplate of v (merged into v).
=================  ==========================================================================

Console use::

    from SpineSegLib.iis.train.readers import read_dataset
    cases = read_dataset("myosegmentum", "../shared/data/mr/vertebral-bodies-myosegmentum")
    cases[0].case_id, cases[0].vertebra_map()    # 'myosegmentum/01', {1: 20, 2: 21, 3: 22, 4: 23, 5: 24}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from SpineSegLib.core.errors import InputError
from SpineSegLib.core.image import Image, read_image
from SpineSegLib.iis.train.conventions import LabelMap, label_values, resolve_convention, validate_convention
from SpineSegLib.iis.train.discovery import check_folder, find_pairs, image_files, no_pairs_error, strip_suffix


@dataclass
class Case:
    """One scan with its label map, as listed by a reader (nothing is read yet)."""

    case_id: str                      # "<dataset>/<name>", unique within a training run
    image: Path | None
    label: Path
    dataset: str
    modality: str                     # "ct" | "mr"
    convention: str = "verse"         # how label values map to VerSe ids (iis.train.conventions)
    complete: dict | None = None      # VerSe id (or relative key) -> completely visible; None = unknown
    centroid_file: Path | None = None  # VerSe *_ctd.json; read by `centroids`
    crop_unlabelled: str = "none"     # "none" | "above" | "below" | "both" (iis.train.prepared)
    note: str = ""
    _map_cache: dict | None = field(default=None, repr=False, compare=False)
    _centroids: dict | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        validate_convention(self.convention)
        if self.crop_unlabelled not in ("none", "above", "below", "both"):
            raise InputError(f"crop_unlabelled = {self.crop_unlabelled!r}: use none, above, below or both")

    @property
    def centroids(self) -> dict | None:
        """``{VerSe id: (x, y, z) LPS mm}`` from the centroid file (read on first use), else None."""
        return self.load_centroids()

    def load_centroids(self, mask: Image | None = None) -> dict | None:
        """:attr:`centroids`, converted with the geometry of ``mask`` (the label image, read if not given)."""
        if self._centroids is None and self.centroid_file is not None:
            self._centroids = read_verse_centroids(self.centroid_file, mask if mask is not None else read_image(self.label))
        return self._centroids

    @property
    def identified(self) -> bool:
        """True when the convention names the vertebrae (else only their order is known)."""
        kind, _, name = self.convention.partition(":")
        return kind in ("verse", "tptbox") or bool(name)

    def label_map(self, label_array: np.ndarray | None = None) -> LabelMap:
        """How this case's label values map onto vertebrae, discs and the spinal canal.

        ``label_array`` (canonical ``[z, y, x]``): the label map; without it, the label file is read
        when the convention depends on the values present (``top-down``, ``bottom-up``, ``by-position``).
        """
        if self._map_cache is None:
            if label_array is None and self.convention.split(":")[0] in ("by-position", "top-down", "bottom-up"):
                from SpineSegLib.core.orientation import to_canonical
                label_array = to_canonical(read_image(self.label)).image.array
            values = None
            if label_array is not None:
                values = label_values(label_array)
            self._map_cache = {"map": resolve_convention(self.convention, values, label_array)}
        return self._map_cache["map"]

    def vertebra_map(self, label_array: np.ndarray | None = None) -> dict:
        """``{label value: VerSe id}`` (or relative key when not identified)."""
        return dict(self.label_map(label_array).vertebrae)


def read_folder(root, convention: str = "verse", modality: str = "ct", dataset: str | None = None,
                crop_unlabelled: str = "none") -> list[Case]:
    """A generic folder of image/label pairs (pairing rules: ``discovery.find_pairs``)."""
    root = check_folder(root)
    validate_convention(convention)
    pairs = find_pairs(root)
    if not pairs:
        raise no_pairs_error(root, "looked for imagesTr/labelsTr, images/labels, X_img + X_label (or _seg, _mask, _vb ...) "
                              "and per-case folders with image + vertebrae files")
    dataset = dataset or root.name
    return [Case(f"{dataset}/{name}", img, lab, dataset, modality, convention, crop_unlabelled=crop_unlabelled)
            for name, img, lab in pairs]


def read_ctspine1k(root) -> list[Case]:
    """CTSpine1K: ``data/<subset>/<case>.nii.gz`` + ``label*/**/<case>_seg.nii.gz``, or a flat folder."""
    root = check_folder(root)
    labels: dict[str, Path] = {}
    for p in sorted(root.rglob("*_seg.nii.gz")):
        labels.setdefault(p.name[: -len("_seg.nii.gz")], p)
    if not labels:
        raise no_pairs_error(root, "no <case>_seg.nii.gz label files")
    cases = []
    data_dir = root / "data" if (root / "data").is_dir() else root
    for p in sorted(data_dir.rglob("*.nii.gz")):
        if p.name.endswith("_seg.nii.gz"):
            continue
        name = p.name[: -len(".nii.gz")]
        if name in labels:
            subset = p.parent.name if p.parent != data_dir else ""
            cases.append(Case(f"ctspine1k/{name}", p, labels[name], "ctspine1k", "ct", "verse",
                              note=f"subset {subset}" if subset else ""))
    if not cases:
        raise no_pairs_error(root, f"{len(labels)} label files but no matching <case>.nii.gz images")
    return cases


VERSE_MASK = "_seg-vert_msk.nii.gz"


def read_verse(root, require_images: bool = True, crop_unlabelled: str = "none") -> list[Case]:
    """VerSe (BIDS names). ``require_images=False`` also lists masks whose image is missing
    (``Case.image`` None): useful for label and centroid statistics. VerSe left some partly visible
    vertebrae at the edge of the field of view unlabelled (CTSpine1K's README, 2021); where that
    matters, ``crop_unlabelled="above"`` (or "below", "both") pads the scan beyond the labelled
    ones -- "below" also removes a labelled sacrum (26)."""
    root = check_folder(root)
    images = {p.name[: -len("_ct.nii.gz")]: p for p in root.rglob("*_ct.nii.gz")}
    centroid_files = {p.name: p for p in sorted(root.rglob("*_ctd.json"))}
    cases = []
    for mask in sorted(root.rglob("*" + VERSE_MASK)):
        stem = mask.name[: -len(VERSE_MASK)]
        image = images.get(stem)
        if image is None and require_images:
            continue
        ctd = centroid_files.get(stem + "_seg-subreg_ctd.json") or centroid_files.get(stem + "_seg-vert_ctd.json")
        cases.append(Case(f"verse/{stem}", image, mask, "verse", "ct", "verse", centroid_file=ctd,
                          crop_unlabelled=crop_unlabelled))
    if not cases:
        what = "no *_seg-vert_msk.nii.gz masks" if not any(root.rglob("*" + VERSE_MASK)) else "masks without *_ct.nii.gz images"
        raise no_pairs_error(root, what)
    return cases


def read_verse_centroids(path, mask: Image) -> dict:
    """VerSe centroid JSON -> ``{VerSe id: (x, y, z) LPS mm}``.

    The file's first entry names the axes of its coordinates (``{"direction": ["P", "I", "R"]}``,
    each letter where the axis points); ``X, Y, Z`` are continuous voxel indices along those axes
    on the mask's grid. They are mapped onto the mask's own axes (permuted / reversed as needed)
    and then to LPS with the mask's geometry.
    """
    path = Path(path)
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable centroid JSON file ({exc})") from None
    if not isinstance(entries, list) or not entries:
        raise InputError(f"{path}: expected a list of centroid entries")
    direction = None
    points = {}
    for e in entries:
        if "direction" in e:
            direction = [str(d).upper() for d in e["direction"]]
        elif "label" in e:
            points[int(e["label"])] = (float(e["X"]), float(e["Y"]), float(e["Z"]))
    mask_axes = mask.orientation
    opposite = {"L": "R", "R": "L", "P": "A", "A": "P", "S": "I", "I": "S"}
    if direction is None:
        direction = list(mask_axes)
    out = {}
    for label, xyz in points.items():
        ijk = np.zeros(3)
        for a, letter in enumerate(direction):
            if letter in mask_axes:
                m = mask_axes.index(letter)
                ijk[m] = xyz[a]
            elif opposite[letter] in mask_axes:
                m = mask_axes.index(opposite[letter])
                ijk[m] = mask.size[m] - 1 - xyz[a]
            else:
                raise InputError(f"{path}: axis code {letter!r} does not fit the mask orientation {mask_axes}")
        out[label] = tuple(float(v) for v in mask.index_to_lps(ijk))
    return out


def read_spider(root, lowest: str | None = "L5") -> list[Case]:
    """SPIDER: ``images/<id>.mha`` + ``masks/<id>.mha`` (module docstring for the numbering)."""
    root = check_folder(root)
    di, dm = root / "images", root / "masks"
    if not (di.is_dir() and dm.is_dir()):
        raise InputError(f"{root}: a SPIDER folder needs images/ and masks/ sub-folders")
    masks = {strip_suffix(p.name)[0]: p for p in image_files(dm)}
    convention = f"spider:{lowest}" if lowest else "spider"
    cases = [Case(f"spider/{strip_suffix(p.name)[0]}", p, masks[strip_suffix(p.name)[0]], "spider", "mr", convention)
             for p in image_files(di) if strip_suffix(p.name)[0] in masks]
    if not cases:
        raise no_pairs_error(root, "no images/<id>.mha with a masks/<id>.mha of the same name")
    return cases


def read_myosegmentum(root) -> list[Case]:
    return read_folder(root, "top-down:L1", "mr", "myosegmentum", crop_unlabelled="above")


def read_zukic(root) -> list[Case]:
    return read_folder(root, "by-position:L5", "mr", "zukic", crop_unlabelled="above")


def read_discs(root) -> list[Case]:
    return read_folder(root, "discs-bottom-up:L5", "mr", "discs")


def read_tptbox(root, modality: str = "mr") -> list[Case]:
    root = check_folder(root)
    if (root / "image.nii.gz").exists():    # a single TPTBox case folder
        name = root.name
        return [Case(f"tptbox/{name}", root / "image.nii.gz", root / "vertebrae.nii.gz", "tptbox", modality, "tptbox")]
    return read_folder(root, "tptbox", modality, "tptbox")


def read_synthetic_ct(root, variants: int = 3, seed: int = 0) -> list[Case]:
    """CT-like images painted around the vertebra label maps in ``root`` (see ``iis.train.synthetic_ct``)."""
    from SpineSegLib.iis.train.synthetic_ct import synthetic_cases

    root = check_folder(root)
    return [Case(f"synthetic/{name}", image, label, "synthetic", "ct", "verse")
            for name, image, label in synthetic_cases(root, variants, seed)]


READERS = {
    "ctspine1k": read_ctspine1k,
    "verse": read_verse,
    "spider": read_spider,
    "folder": read_folder,
    "myosegmentum": read_myosegmentum,
    "zukic": read_zukic,
    "synthetic-ct": read_synthetic_ct,
    "discs": read_discs,
    "tptbox": read_tptbox,
}
KINDS = tuple(READERS)


def read_dataset(kind: str, root, **options) -> list[Case]:
    """List the cases of a dataset of ``kind`` (one of :data:`KINDS`) under ``root``."""
    if kind not in READERS:
        raise InputError(f"unknown dataset kind {kind!r} (use one of {', '.join(KINDS)})")
    try:
        return READERS[kind](root, **options)
    except TypeError as exc:
        raise InputError(f"dataset kind {kind!r}: {exc}") from None
