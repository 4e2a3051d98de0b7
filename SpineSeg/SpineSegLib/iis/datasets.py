"""Training data for the IIS network: dataset readers, label conventions and model-grid caching.

A reader lists the cases of a dataset as :class:`Case` records -- paths, modality and the *label
convention* that says how the values in the label file map onto SpineSeg's VerSe ids
(``SpineSegLib.labels``). :func:`prepare_case` then reads a case, maps image AND labels onto the
model grid with ``preprocess.to_model_grid`` (exactly what inference sees) and returns a
:class:`PreparedCase` with one instance per vertebra, ordered from the top of the spine down.

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
``folder``         a generic folder of pairs, see :func:`find_pairs`; ``convention`` says what the
                   label values mean.
``myosegmentum``   ``NN_img`` + ``NN_vb``: 1-5 = L1-L5 from the top (``top-down:L1``).
``zukic``          ``NN_img`` + ``NN_vb``: 7 vertebral bodies with ids in arbitrary order. They are
                   sorted by height and the lowest is taken to be L5 (``by-position:L5``): in all 17
                   scans the sacrum lies directly below the lowest labelled body, so they cover T11-L5.
``discs``          ``NN_img`` + ``NN_ivd``: 1 = L5/S1 ... 5 = L1/L2 (discs only, no vertebrae).
``synthetic-ct``   a folder of vertebra label maps (e.g. VerSe masks): ``variants`` CT-like images are
                   painted around each (``iis.synthetic_ct``), made once into a cache folder.
``tptbox``         TPTBox layout ``<case>/image.nii.gz`` + ``<case>/vertebrae.nii.gz``: VerSe ids,
                   100 + v = disc below v, 200 + v = endplate of v (merged into v).
=================  ==========================================================================

Label conventions (``Case.convention``):

* ``verse`` -- values 1-25 and 28 are VerSe ids; 26 (sacrum) and anything else is background.
* ``tptbox`` -- ``verse`` plus discs 100 + v and endplates 200 + v (counted as part of v).
* ``spider`` / ``spider:NAME`` -- SPIDER numbering; vertebra 1 is NAME (else: identity unknown).
* ``top-down:NAME`` / ``bottom-up:NAME`` -- value 1 is NAME, 2 the next one down / up the spine;
  without ``:NAME`` the order is kept but the identity is unknown.
* ``by-position:NAME`` -- values in any order; sorted by height, the lowest is NAME.
* ``discs-bottom-up:NAME`` -- disc labels only; value 1 is the disc below NAME, 2 the one above ...

Vertebrae above or below the labelled ones that are visible but not labelled (MyoSegmenTUM's
T12, the thoracic vertebrae above the Zukic labels) would teach the network that a vertebra is
background. ``Case.crop_unlabelled = "above"`` sets the scan above the top labelled vertebra to
padding: above a plane fitted to that vertebra's upper surface, moved up by half the median disc
gap between the labelled vertebrae (2-10 mm), as Lessmann et al. cropped such scans by hand. The
top labelled vertebra stays complete. An unlabelled sacrum is left visible: it
is background for the network.

Completeness: a vertebra counts as complete in the scan when the dataset says so
(``Case.complete``) or, when unknown, when it does not touch the border of the field of view.

Console use::

    from SpineSegLib.iis.datasets import read_dataset, prepare_case
    from SpineSegLib.iis.config import IISConfig
    cases = read_dataset("myosegmentum", "../shared/data/mr/vertebral-bodies-myosegmentum")
    cases[0].case_id, cases[0].vertebra_map()    # 'myosegmentum/01', {1: 20, 2: 21, 3: 22, 4: 23, 5: 24}
    prepared = prepare_case(cases[0], IISConfig.default_mr(voxel_size_mm=(2, 2, 2), patch_size=(48, 48, 32)))
    prepared.instances.shape, [v.name for v in prepared.vertebrae]   # (112, 112, 38), ['L1', ..., 'L5']
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..image import Image, read_image
from ..labels import VERTEBRAE, name_of, next_label
from .config import IISConfig

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")
TARGET_IDS = tuple([*range(1, 26), 28])   # vertebra ids the network segments (the sacrum is not one)
CACHE_VERSION = 1


# ----------------------------------------------------------------------------------------------
# case records
# ----------------------------------------------------------------------------------------------
@dataclass
class Case:
    """One scan with its label map, as listed by a reader (nothing is read yet)."""

    case_id: str                      # "<dataset>/<name>", unique within a training run
    image: Path | None
    label: Path
    dataset: str
    modality: str                     # "ct" | "mr"
    convention: str = "verse"         # how label values map to VerSe ids (module docstring)
    complete: dict | None = None      # VerSe id (or relative key) -> completely visible; None = unknown
    centroid_file: Path | None = None  # VerSe *_ctd.json; read by `centroids`
    crop_unlabelled: str = "none"     # "none" | "above" | "below" | "both"
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

    def label_map(self, label_array: np.ndarray | None = None) -> "LabelMap":
        """How this case's label values map onto vertebrae, discs and the spinal canal.

        ``label_array`` (canonical ``[z, y, x]``): the label map; without it, the label file is read
        when the convention depends on the values present (``top-down``, ``bottom-up``, ``by-position``).
        """
        if self._map_cache is None:
            if label_array is None and self.convention.split(":")[0] in ("by-position", "top-down", "bottom-up"):
                from ..orientation import to_canonical
                label_array = to_canonical(read_image(self.label)).image.array
            values = None
            if label_array is not None:
                values = label_values(label_array)
            self._map_cache = {"map": resolve_convention(self.convention, values, label_array)}
        return self._map_cache["map"]

    def vertebra_map(self, label_array: np.ndarray | None = None) -> dict:
        """``{label value: VerSe id}`` (or relative key when not identified)."""
        return dict(self.label_map(label_array).vertebrae)


def label_values(array: np.ndarray) -> list[int]:
    """The non-zero values of a label map, ascending (bincount: much faster than np.unique)."""
    array = np.asarray(array)
    if np.issubdtype(array.dtype, np.integer) and array.size and array.min() >= 0 and array.max() < 1 << 24:
        return [int(v) for v in np.nonzero(np.bincount(array.ravel()))[0] if v]
    return [int(v) for v in np.unique(array) if v]


@dataclass
class LabelMap:
    """Meaning of the values of one label map.

    ``vertebrae``: value -> key, where the key is a VerSe id when ``identified`` and otherwise a
    relative rank that grows down the spine. ``discs``: value -> key of the vertebra *above* the
    disc. ``merged``: values that belong to a vertebra (TPTBox endplates). ``canal``: values of the
    spinal canal. Values in none of these are background.
    """

    vertebrae: dict
    identified: bool
    discs: dict = field(default_factory=dict)
    merged: dict = field(default_factory=dict)
    canal: tuple = ()

    def order(self, key) -> float:
        """Position of a vertebra key along the spine, growing downwards."""
        return VERTEBRAE[key].order if self.identified else float(key)


def _needs_positions(convention: str) -> bool:
    return convention.split(":")[0] == "by-position"


def _sequence_from(name: str, count: int, downwards: bool) -> list[int]:
    from ..labels import by_name

    try:
        first = by_name(name).label
    except KeyError as exc:
        raise InputError(str(exc).strip("'\"")) from None
    ids = [first]
    for _ in range(count - 1):
        try:
            ids.append(next_label(ids[-1], 1 if downwards else -1))
        except ValueError:
            raise InputError(f"label convention: {count} vertebrae counted from {name} run past the end of the spine") from None
    return ids


CONVENTION_KINDS = ("verse", "tptbox", "spider", "top-down", "bottom-up", "by-position", "discs-bottom-up")


def validate_convention(convention: str) -> None:
    """Raise :class:`InputError` unless ``convention`` is well-formed (its vertebra name included)."""
    from ..labels import by_name

    kind, _, name = str(convention).partition(":")
    if kind not in CONVENTION_KINDS:
        raise InputError(f"unknown label convention {convention!r} (use verse, tptbox, spider[:NAME], top-down[:NAME], "
                         "bottom-up[:NAME], by-position[:NAME] or discs-bottom-up:NAME)")
    if kind in ("verse", "tptbox") and name:
        raise InputError(f"label convention {kind!r} takes no vertebra name")
    if kind == "discs-bottom-up" and not name:
        raise InputError("label convention 'discs-bottom-up' needs the vertebra above the lowest disc, e.g. 'discs-bottom-up:L5'")
    if name:
        try:
            by_name(name)
        except KeyError:
            raise InputError(f"label convention {convention!r}: unknown vertebra name {name!r}") from None


def resolve_convention(convention: str, values=None, label_array: np.ndarray | None = None) -> LabelMap:
    """The :class:`LabelMap` of ``convention`` for a label map holding ``values``.

    ``values`` (non-zero label values present) may be None for conventions that do not depend on
    them; ``label_array`` (canonical ``[z, y, x]``) is needed for ``by-position``.
    """
    validate_convention(convention)
    kind, _, name = convention.partition(":")
    vals = sorted(values) if values is not None else None
    if kind == "verse":
        present = vals if vals is not None else TARGET_IDS
        return LabelMap({v: v for v in present if v in TARGET_IDS}, True)
    if kind == "tptbox":
        present = vals if vals is not None else [*TARGET_IDS, *(100 + v for v in TARGET_IDS), *(200 + v for v in TARGET_IDS)]
        verts = {v: v for v in present if v in TARGET_IDS}
        return LabelMap(verts, True,
                        discs={v: v - 100 for v in present if 100 < v < 200 and v - 100 in TARGET_IDS},
                        merged={v: v - 200 for v in present if 200 < v < 300 and v - 200 in TARGET_IDS})
    if kind == "spider":
        present = vals if vals is not None else [*range(1, 100), 100, *range(201, 300)]
        ranks = [v for v in present if 0 < v < 100]
        discs = [v for v in present if v > 200]
        if name:
            ids = _sequence_from(name, max(ranks + [d - 200 for d in discs] + [1]), downwards=False)
            verts = {k: ids[k - 1] for k in ranks}
            disc_map = {d: ids[d - 201] for d in discs}
            return LabelMap(verts, True, discs=disc_map, canal=(100,) if 100 in present else ())
        return LabelMap({k: -k for k in ranks}, False, discs={d: -(d - 200) for d in discs},
                        canal=(100,) if 100 in present else ())
    if kind in ("top-down", "bottom-up"):
        if vals is None:
            raise InputError(f"label convention {convention!r} needs the label values")
        downwards = kind == "top-down"
        if name:
            ids = _sequence_from(name, max(vals), downwards)
            return LabelMap({v: ids[v - 1] for v in vals}, True)
        return LabelMap({v: (v if downwards else -v) for v in vals}, False)
    if kind == "by-position":
        if label_array is None or vals is None:
            raise InputError(f"label convention {convention!r} needs the label map itself")
        heights = ndimage.center_of_mass(np.ones(label_array.shape, bool), label_array, vals)
        by_height = [v for _, v in sorted(zip([h[0] for h in heights], vals))]   # lowest first (z superior)
        if name:
            ids = _sequence_from(name, len(vals), downwards=False)
            return LabelMap({v: ids[i] for i, v in enumerate(by_height)}, True)
        return LabelMap({v: -i for i, v in enumerate(by_height)}, False)
    if kind == "discs-bottom-up":
        if not name:
            raise InputError("label convention 'discs-bottom-up' needs the vertebra above the lowest disc, e.g. 'discs-bottom-up:L5'")
        present = vals if vals is not None else list(range(1, 25))
        ids = _sequence_from(name, max(present), downwards=False)
        return LabelMap({}, True, discs={v: ids[v - 1] for v in present})
    raise InputError(f"unknown label convention {convention!r} (use verse, tptbox, spider[:NAME], top-down[:NAME], "
                     "bottom-up[:NAME], by-position[:NAME] or discs-bottom-up:NAME)")


# ----------------------------------------------------------------------------------------------
# readers
# ----------------------------------------------------------------------------------------------
def _strip_suffix(name: str) -> tuple[str, str] | None:
    low = name.lower()
    for suffix in IMAGE_SUFFIXES:
        if low.endswith(suffix):
            return name[: -len(suffix)], suffix
    return None


def _check_folder(root) -> Path:
    root = Path(root)
    if not root.exists():
        raise InputError(f"dataset folder not found: {root}")
    if not root.is_dir():
        raise InputError(f"dataset path is not a folder: {root}")
    return root


def _image_files(folder: Path, recursive: bool = False) -> list[Path]:
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in folder.glob(pattern) if p.is_file() and _strip_suffix(p.name) and not p.name.startswith("."))


IMAGE_TAGS = ("_img", "_image", "_ct", "_mr", "_t1", "_t2", "_0000")
LABEL_TAGS = ("_label", "_labels", "_seg", "_mask", "_msk", "_vb", "_ivd", "_vert", "_vertebrae", "_gt")
LABEL_FOLDERS = ("labels", "labelsTr", "labelsTs", "masks", "segmentations", "label", "gt")
IMAGE_FOLDERS = ("images", "imagesTr", "imagesTs", "image", "volumes", "data")
PER_CASE_IMAGES = ("image", "img", "ct", "mr", "t1", "t2")
PER_CASE_LABELS = ("vertebrae", "label", "labels", "seg", "mask", "msk", "vert")


def find_pairs(root) -> list[tuple[str, Path, Path]]:
    """``(name, image, label)`` pairs in a generic folder, by the first of these rules that matches:

    1. nnU-Net: ``imagesTr/X_0000.ext`` + ``labelsTr/X.ext`` (also ``imagesTs``/``labelsTs``);
       other image/label sub-folder pairs (``images/`` + ``labels/`` or ``masks/`` ...) pair equal
       names, and ``X_0000`` in the image folder pairs with ``X``.
    2. Flat: ``X<tag>.ext`` + ``X<ltag>.ext`` with an image tag (``_img _image _ct _mr _t1 _t2 _0000``)
       and a label tag (``_label(s) _seg _mask _msk _vb _ivd _vert(ebrae) _gt``); ``X.ext`` pairs with
       a labelled ``X<ltag>.ext`` too.
    3. One sub-folder per case: ``X/image.ext`` (or ``img``, ``ct``, ``mr``) + ``X/vertebrae.ext``
       (or ``label(s)``, ``seg``, ``mask``, ``msk``, ``vert``).

    An image whose label has two candidates raises :class:`InputError` (ambiguous).
    """
    root = _check_folder(root)
    pairs: list[tuple[str, Path, Path]] = []

    # 1. image / label sub-folders
    for img_dir in IMAGE_FOLDERS:
        for lab_dir in LABEL_FOLDERS:
            di, dl = root / img_dir, root / lab_dir
            if not (di.is_dir() and dl.is_dir()) or di == dl:
                continue
            if img_dir.startswith("images") and lab_dir.startswith("labels") and img_dir[6:] != lab_dir[6:]:
                continue   # imagesTr goes with labelsTr only
            labels = {}
            for p in _image_files(dl):
                labels.setdefault(_strip_suffix(p.name)[0], p)
            for p in _image_files(di):
                stem = _strip_suffix(p.name)[0]
                key = stem[:-5] if stem.endswith("_0000") and stem[:-5] in labels else stem
                if key in labels:
                    pairs.append((key, p, labels[key]))
    if pairs:
        return pairs

    # 2. flat folder with name tags
    files = _image_files(root)
    stems = {}
    for p in files:
        stems.setdefault(_strip_suffix(p.name)[0], []).append(p)
    label_of: dict[str, list[Path]] = {}
    for stem, paths in stems.items():
        for tag in LABEL_TAGS:
            if stem.lower().endswith(tag) and len(stem) > len(tag):
                label_of.setdefault(stem[: -len(tag)], []).extend(paths)
    label_files = {p for ps in label_of.values() for p in ps}
    for stem, paths in sorted(stems.items()):
        for p in paths:
            if p in label_files:
                continue
            base = stem
            for tag in IMAGE_TAGS:
                if stem.lower().endswith(tag) and len(stem) > len(tag):
                    base = stem[: -len(tag)]
                    break
            candidates = label_of.get(base, [])
            if len(candidates) > 1:
                raise InputError(f"{root}: image {p.name} has several label files: {', '.join(c.name for c in candidates)}")
            if candidates:
                pairs.append((base, p, candidates[0]))
    if pairs:
        return pairs

    # 3. one folder per case
    for sub in sorted(d for d in root.iterdir() if d.is_dir()):
        found = {(_strip_suffix(p.name) or ("",))[0].lower(): p for p in _image_files(sub)}
        img = next((found[n] for n in PER_CASE_IMAGES if n in found), None)
        labs = [found[n] for n in PER_CASE_LABELS if n in found]
        if img is not None and labs:
            pairs.append((sub.name, img, labs[0]))
    return pairs


def _no_pairs(root, what: str) -> InputError:
    return InputError(f"no image/label pairs found in {root} ({what})")


def read_folder(root, convention: str = "verse", modality: str = "ct", dataset: str | None = None,
                crop_unlabelled: str = "none") -> list[Case]:
    """A generic folder of image/label pairs (pairing rules: :func:`find_pairs`)."""
    root = _check_folder(root)
    validate_convention(convention)
    pairs = find_pairs(root)
    if not pairs:
        raise _no_pairs(root, "looked for imagesTr/labelsTr, images/labels, X_img + X_label (or _seg, _mask, _vb ...) "
                              "and per-case folders with image + vertebrae files")
    dataset = dataset or root.name
    return [Case(f"{dataset}/{name}", img, lab, dataset, modality, convention, crop_unlabelled=crop_unlabelled)
            for name, img, lab in pairs]


def read_ctspine1k(root) -> list[Case]:
    """CTSpine1K: ``data/<subset>/<case>.nii.gz`` + ``label*/**/<case>_seg.nii.gz``, or a flat folder."""
    root = _check_folder(root)
    labels: dict[str, Path] = {}
    for p in sorted(root.rglob("*_seg.nii.gz")):
        labels.setdefault(p.name[: -len("_seg.nii.gz")], p)
    if not labels:
        raise _no_pairs(root, "no <case>_seg.nii.gz label files")
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
        raise _no_pairs(root, f"{len(labels)} label files but no matching <case>.nii.gz images")
    return cases


VERSE_MASK = "_seg-vert_msk.nii.gz"


def read_verse(root, require_images: bool = True, crop_unlabelled: str = "none") -> list[Case]:
    """VerSe (BIDS names). ``require_images=False`` also lists masks whose image is missing
    (``Case.image`` None): useful for label and centroid statistics. VerSe left some partly visible
    vertebrae at the edge of the field of view unlabelled (CTSpine1K's README, 2021); where that
    matters, ``crop_unlabelled="above"`` (or "below", "both") pads the scan beyond the labelled
    ones -- "below" also removes a labelled sacrum (26)."""
    root = _check_folder(root)
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
        raise _no_pairs(root, what)
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
        entries = json.loads(path.read_text())
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
    root = _check_folder(root)
    di, dm = root / "images", root / "masks"
    if not (di.is_dir() and dm.is_dir()):
        raise InputError(f"{root}: a SPIDER folder needs images/ and masks/ sub-folders")
    masks = {_strip_suffix(p.name)[0]: p for p in _image_files(dm)}
    convention = f"spider:{lowest}" if lowest else "spider"
    cases = [Case(f"spider/{_strip_suffix(p.name)[0]}", p, masks[_strip_suffix(p.name)[0]], "spider", "mr", convention)
             for p in _image_files(di) if _strip_suffix(p.name)[0] in masks]
    if not cases:
        raise _no_pairs(root, "no images/<id>.mha with a masks/<id>.mha of the same name")
    return cases


def read_myosegmentum(root) -> list[Case]:
    return read_folder(root, "top-down:L1", "mr", "myosegmentum", crop_unlabelled="above")


def read_zukic(root) -> list[Case]:
    return read_folder(root, "by-position:L5", "mr", "zukic", crop_unlabelled="above")


def read_discs(root) -> list[Case]:
    return read_folder(root, "discs-bottom-up:L5", "mr", "discs")


def read_tptbox(root, modality: str = "mr") -> list[Case]:
    root = _check_folder(root)
    if (root / "image.nii.gz").exists():    # a single TPTBox case folder
        name = root.name
        return [Case(f"tptbox/{name}", root / "image.nii.gz", root / "vertebrae.nii.gz", "tptbox", modality, "tptbox")]
    return read_folder(root, "tptbox", modality, "tptbox")


def read_synthetic_ct(root, variants: int = 3, seed: int = 0) -> list[Case]:
    """CT-like images painted around the vertebra label maps in ``root`` (see ``iis.synthetic_ct``)."""
    from .synthetic_ct import synthetic_cases

    root = _check_folder(root)
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


# ----------------------------------------------------------------------------------------------
# model-grid preparation
# ----------------------------------------------------------------------------------------------
@dataclass
class VertebraInfo:
    """One labelled vertebra of a prepared case (instance ``index`` in ``PreparedCase.instances``)."""

    index: int              # 1 = top-most labelled vertebra of the scan
    key: int                # VerSe id, or a relative rank (growing downwards) when not identified
    identified: bool
    complete: bool          # completely inside the scan (before any patch cropping)
    voxels: int             # on the model grid
    bbox: tuple             # (z0, y0, x0, z1, y1, x1), half-open, model grid
    has_disc: bool = False  # a disc below it is labelled

    @property
    def name(self) -> str:
        return name_of(self.key) if self.identified else f"#{self.index}"

    @property
    def verse_id(self) -> int | None:
        return self.key if self.identified else None


@dataclass
class PreparedCase:
    """A case on the model grid (canonical ``[z, y, x]``, ``config.voxel_size_mm``)."""

    case_id: str
    image: np.ndarray          # normalised intensities (float16 or float32)
    instances: np.ndarray      # uint8: 0 background, i = vertebrae[i - 1], top to bottom
    vertebrae: list            # VertebraInfo, index order
    discs: np.ndarray | None   # uint8: instance index of the vertebra above the disc, 0 none
    canal: np.ndarray | None   # bool
    voxel_size_mm: tuple
    modality: str

    @property
    def shape(self):
        return self.image.shape

    @property
    def voxel_volume_mm3(self) -> float:
        return float(np.prod(self.voxel_size_mm))


def _touches_border(bbox, shape) -> bool:
    return any(b == 0 for b in bbox[:3]) or any(e >= s for e, s in zip(bbox[3:], shape))


def _column_extent(mask: np.ndarray, top: bool) -> np.ndarray:
    """Per (y, x) column the highest (``top``) or lowest z of ``mask``; NaN where the column is empty."""
    has = mask.any(axis=0)
    if top:
        z = mask.shape[0] - 1 - np.argmax(mask[::-1], axis=0)
    else:
        z = np.argmax(mask, axis=0)
    return np.where(has, z, np.nan).astype(float)


def _unlabelled_region(instances: np.ndarray, infos, voxel_z_mm: float, side: str) -> np.ndarray:
    """Voxels beyond the labelled vertebrae (module docstring): above a plane fitted to the upper
    surface of the top-most labelled vertebra (``side="above"``) -- or below the lower surface of
    the lowest -- moved out by half the median disc gap between labelled neighbours (2-10 mm)."""
    gaps = []
    for a, b in zip(infos, infos[1:]):          # a above b
        lower_of_a = _column_extent(instances == a.index, top=False)
        upper_of_b = _column_extent(instances == b.index, top=True)
        g = lower_of_a - upper_of_b - 1
        g = g[np.isfinite(g)]
        if g.size:
            gaps.append(float(np.median(g)))
    gap_mm = float(np.median(gaps)) * voxel_z_mm if gaps else 8.0
    margin = float(np.clip(gap_mm / 2.0, 2.0, 10.0)) / voxel_z_mm
    edge = infos[0] if side == "above" else infos[-1]
    surface = _column_extent(instances == edge.index, top=(side == "above"))
    yy, xx = np.nonzero(np.isfinite(surface))
    design = np.column_stack([np.ones(len(yy)), yy, xx])
    coef, *_ = np.linalg.lstsq(design, surface[yy, xx], rcond=None)
    gy, gx = np.mgrid[0:instances.shape[1], 0:instances.shape[2]]
    plane = coef[0] + coef[1] * gy + coef[2] * gx
    z = np.arange(instances.shape[0])[:, None, None]
    if side == "above":
        # never cut into the vertebra itself where the plane fit runs below its surface
        plane = np.fmax(plane, np.nan_to_num(surface, nan=-np.inf))
        return z > plane + margin
    plane = np.fmin(plane, np.nan_to_num(surface, nan=np.inf))
    return z < plane - margin


def prepare_case(case: Case, config: IISConfig, cache_dir=None, mmap: bool = True) -> PreparedCase:
    """Read ``case`` and map it onto ``config``'s model grid (cached under ``cache_dir`` if given)."""
    from .preprocess import to_model_grid

    if case.image is None:
        raise InputError(f"{case.case_id}: the image file is missing")
    cache_path = None
    if cache_dir is not None:
        cache_path = Path(cache_dir) / _cache_key(case, config)
        if (cache_path / "meta.json").exists():
            return _load_cached(cache_path, mmap)

    image = read_image(case.image)
    label = read_image(case.label)
    if image.shape != label.shape:
        raise InputError(f"{case.case_id}: label grid {label.shape[::-1]} does not match the image grid {image.shape[::-1]} "
                         f"({case.label.name} vs {case.image.name})")
    if not image.same_grid(label, tol=1e-3):
        if (np.allclose(image.spacing, label.spacing, rtol=1e-3) and np.allclose(image.direction, label.direction, atol=1e-3)
                and np.allclose(image.origin, label.origin, atol=0.5 * min(image.spacing))):
            label = image.with_array(label.array)     # header rounding differences only
        else:
            raise InputError(f"{case.case_id}: label and image grids differ (spacing {label.spacing} vs {image.spacing}, "
                             f"origin {label.origin} vs {image.origin})")
    if not np.issubdtype(label.array.dtype, np.integer):
        rounded = np.rint(label.array)
        if not np.allclose(rounded, label.array):
            raise InputError(f"{case.case_id}: the label map holds non-integer values")
        label = label.with_array(rounded.astype(np.int32))

    grid = to_model_grid(image, config)
    lab = grid.labels(label).array.astype(np.int32)
    lmap = case.label_map(lab)
    shape = lab.shape

    for v, k in lmap.merged.items():
        lab[lab == v] = _value_of(lmap.vertebrae, k, lab)
    keys = sorted(set(lmap.vertebrae.values()), key=lmap.order)
    present = {k for v, k in lmap.vertebrae.items() if np.any(lab == v)}
    keys = [k for k in keys if k in present]
    if len(keys) > 255:
        raise InputError(f"{case.case_id}: more than 255 vertebrae")
    index_of = {k: i + 1 for i, k in enumerate(keys)}
    lut = np.zeros(int(lab.max()) + 1 if lab.size else 1, np.uint8)
    for v, k in lmap.vertebrae.items():
        if k in index_of and v < len(lut):
            lut[v] = index_of[k]
    instances = lut[np.clip(lab, 0, len(lut) - 1)]

    discs = canal = None
    if config.variant == "spider":
        dlut = np.zeros_like(lut)
        for v, k in lmap.discs.items():
            if k in index_of and v < len(dlut):
                dlut[v] = index_of[k]
        discs = dlut[np.clip(lab, 0, len(dlut) - 1)]
        canal = np.isin(lab, list(lmap.canal)) if lmap.canal else np.zeros(shape, bool)

    infos = _vertebra_infos(instances, keys, lmap.identified, case.complete, discs)
    img = grid.image.array
    vz = config.voxel_size_mm[0]
    for side in ("above", "below"):
        if case.crop_unlabelled in (side, "both") and infos:
            outside = _unlabelled_region(instances, infos, vz, side)
            img[outside] = config.pad_value
            for a in (instances, discs, canal):
                if a is not None:
                    a[outside] = 0
    infos = _vertebra_infos(instances, keys, lmap.identified, case.complete, discs)

    prepared = PreparedCase(case.case_id, img.astype(np.float32), instances, infos, discs, canal,
                            tuple(config.voxel_size_mm), case.modality)
    if cache_path is not None:
        _save_cached(cache_path, prepared)
        return _load_cached(cache_path, mmap)
    return prepared


def _value_of(vertebrae: dict, key, lab) -> int:
    for v, k in vertebrae.items():
        if k == key:
            return v
    return 0


def _vertebra_infos(instances, keys, identified, complete_flags, discs) -> list[VertebraInfo]:
    objects = ndimage.find_objects(instances, max_label=len(keys))
    counts = np.bincount(instances.ravel(), minlength=len(keys) + 1)
    disc_counts = np.bincount(discs.ravel(), minlength=len(keys) + 1) if discs is not None else None
    infos = []
    for i, key in enumerate(keys, start=1):
        sl = objects[i - 1]
        if sl is None:
            continue
        bbox = tuple(s.start for s in sl) + tuple(s.stop for s in sl)
        complete = not _touches_border(bbox, instances.shape)
        if complete_flags is not None and key in complete_flags:
            complete = complete and bool(complete_flags[key])
        infos.append(VertebraInfo(i, key, identified, complete, int(counts[i]), bbox,
                                  bool(disc_counts is not None and disc_counts[i] > 0)))
    return infos


def _cache_key(case: Case, config: IISConfig) -> str:
    def stamp(p):
        st = os.stat(p)
        return [str(Path(p).resolve()), st.st_size, int(st.st_mtime)]

    payload = json.dumps([CACHE_VERSION, stamp(case.image), stamp(case.label), case.convention, case.crop_unlabelled,
                          case.complete, list(config.voxel_size_mm), config.intensity, config.pad_value, config.variant],
                         sort_keys=True, default=str)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", case.case_id)[-60:]
    return f"{safe}-{hashlib.sha1(payload.encode()).hexdigest()[:12]}"


def _save_cached(path: Path, prepared: PreparedCase) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    np.save(tmp / "image.npy", prepared.image.astype(np.float16))
    np.save(tmp / "instances.npy", prepared.instances)
    if prepared.discs is not None:
        np.save(tmp / "discs.npy", prepared.discs)
        np.save(tmp / "canal.npy", prepared.canal)
    meta = {"case_id": prepared.case_id, "vertebrae": [asdict(v) for v in prepared.vertebrae],
            "voxel_size_mm": list(prepared.voxel_size_mm), "modality": prepared.modality}
    (tmp / "meta.json").write_text(json.dumps(meta))
    if path.exists():       # another process finished first
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
        return
    os.replace(tmp, path)


def _load_cached(path: Path, mmap: bool) -> PreparedCase:
    meta = json.loads((path / "meta.json").read_text())
    mode = "r" if mmap else None
    discs = np.load(path / "discs.npy", mmap_mode=mode) if (path / "discs.npy").exists() else None
    canal = np.load(path / "canal.npy", mmap_mode=mode) if (path / "canal.npy").exists() else None
    infos = [VertebraInfo(**{**v, "bbox": tuple(v["bbox"])}) for v in meta["vertebrae"]]
    return PreparedCase(meta["case_id"], np.load(path / "image.npy", mmap_mode=mode),
                        np.load(path / "instances.npy", mmap_mode=mode), infos, discs, canal,
                        tuple(meta["voxel_size_mm"]), meta["modality"])
