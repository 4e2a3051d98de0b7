"""Exporting the annotated cases of a dataset in the layout of a public dataset (``spineseg dataset export``).

The current label version of every case whose status is corrected or reviewed (``statuses``) is
written with its image; predictions are never exported as labels. Every export also writes
``spineseg_export.json``: for each case the version, its SHA-256, who saved it and when, and the
split -- enough to trace any exported label back to its annotation.

Formats
-------
``nnunet`` (nnU-Net v2 raw dataset)::

    OUT/dataset.json                 channel_names {"0": "CT"|"MR"}, labels, numTraining, file_ending
    OUT/imagesTr/<case>_0000.nii.gz  train + validation split
    OUT/labelsTr/<case>.nii.gz
    OUT/imagesTs/<case>_0000.nii.gz  test split (nnU-Net ignores it; labels in labelsTs/)
    OUT/labelsTs/<case>.nii.gz

  nnU-Net needs consecutive label values, so VerSe ids 1-26 keep their values and T13 (28)
  becomes 27; other ids (discs, canal) follow from 28 in numeric order. ``dataset.json`` lists
  the classes by name and maps them back (``spineseg_verse_ids``).

``verse`` (VerSe 2020 BIDS-like names, CT)::

    OUT/rawdata/sub-<case>/sub-<case>_ct.nii.gz          (MR datasets: ..._mr.nii.gz)
    OUT/derivatives/sub-<case>/sub-<case>_seg-vert_msk.nii.gz
    OUT/derivatives/sub-<case>/sub-<case>_seg-vert_ctd.json

  The centroid file is VerSe's: ``[{"direction": [axis codes]}, {"label": id, "X": .., "Y": .., "Z": ..}]``
  with X, Y, Z the centroid's continuous voxel index along the image's i, j, k axes, whose
  directions the codes name (ITK letters: where each axis points, e.g. ``["L", "P", "S"]``).

``ctspine1k`` (the release's folders)::

    OUT/data/<subset>/<case>.nii.gz
    OUT/label/<subset>/<case>_seg.nii.gz

  ``subset`` defaults to the dataset's name. CTSpine1K labels C1-L6 (1-25); sacrum (26) and T13
  (28) are kept with their VerSe ids and named in ``spineseg_export.json``.

Nothing is overwritten: an existing target file stops the export before anything is written,
unless ``force``.

Console use::

    from SpineSegLib.annotation import open_dataset
    from SpineSegLib.annotation.export import export_dataset
    export_dataset(open_dataset("ds"), "nnunet", "nnUNet_raw/Dataset501_Spine")
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from SpineSegLib.core.errors import InputError
from SpineSegLib.core.files import check_force, replaced_atomically, write_text_atomic
from SpineSegLib.core.image import Image, read_image, write_image
from SpineSegLib.core.labels import VERTEBRAE, name_of
from SpineSegLib.evaluation.label_maps import label_ids
from SpineSegLib.annotation.manifest import now_iso, write_json_atomic
from SpineSegLib.annotation.relabel import label_centroids
from SpineSegLib.annotation.store import AnnotationDataset
from SpineSegLib.annotation.versions import ANNOTATED

FORMATS = ("nnunet", "verse", "ctspine1k")


def nnunet_label_map(ids) -> dict:
    """VerSe id -> nnU-Net class value (module docstring)."""
    mapping = {v: v for v in range(0, 27)}
    mapping[28] = 27
    extra = sorted(int(i) for i in ids if int(i) not in mapping)
    for k, v in enumerate(extra):
        mapping[v] = 28 + k
    return mapping


def _label_name(v: int) -> str:
    if v in VERTEBRAE:
        return VERTEBRAE[v].name
    if 100 < v < 200 and v - 100 in VERTEBRAE:
        return f"disc below {name_of(v - 100)}"
    if 200 < v < 300 and v - 200 in VERTEBRAE:
        return f"endplates of {name_of(v - 200)}"
    if v == 61:
        return "spinal canal"
    return f"label {v}"


def verse_centroids(label: Image) -> list:
    """VerSe centroid JSON entries of a label map (module docstring)."""
    ids = [v for v in label_ids(label.array) if v in VERTEBRAE]
    entries = [{"direction": list(label.orientation)}]
    if ids:
        for vid, (k, j, i) in label_centroids(label.array, ids).items():
            entries.append({"label": vid, "X": round(float(i), 2), "Y": round(float(j), 2), "Z": round(float(k), 2)})
    return entries


def _copy_or_convert(src: Path, dest: Path, force: bool) -> None:
    """``dest`` (.nii.gz) from ``src``: byte copy when it is already .nii.gz, else converted."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    check_force(dest, force)
    if src.name.lower().endswith(".nii.gz"):
        with replaced_atomically(dest, ".nii.gz") as tmp:
            shutil.copyfile(src, tmp)
    else:
        write_image(read_image(src), dest, force=True)


def _targets(fmt: str, case: str, split: str, subset: str, modality: str) -> tuple[str, str, str | None]:
    """(image, label, extra) paths relative to the export folder."""
    if fmt == "nnunet":
        tr = "Ts" if split == "test" else "Tr"
        return f"images{tr}/{case}_0000.nii.gz", f"labels{tr}/{case}.nii.gz", None
    if fmt == "verse":
        sub = f"sub-{case}"
        suffix = "ct" if modality != "mr" else "mr"
        return (f"rawdata/{sub}/{sub}_{suffix}.nii.gz", f"derivatives/{sub}/{sub}_seg-vert_msk.nii.gz",
                f"derivatives/{sub}/{sub}_seg-vert_ctd.json")
    return f"data/{subset}/{case}.nii.gz", f"label/{subset}/{case}_seg.nii.gz", None


def _plan(ds: AnnotationDataset, fmt: str, output: Path, statuses, splits, subset: str, force: bool) -> list:
    """``[(entry, image, label, extra)]`` target paths of the cases to export; refuses (unless
    ``force``) before anything is written when a target exists."""
    entries = [e for e in ds.list_cases(status=statuses, split=splits) if not e.problem]
    missing = [e.name for e in entries if e.image_missing]
    if missing:
        raise InputError(f"cannot export: the image of case(s) {', '.join(missing)} is missing")
    if not entries:
        where = ""
        if splits:
            where = f" in split {splits if isinstance(splits, str) else ', '.join(splits)}"
        raise InputError(f"{ds.root}: no case has status {' or '.join(statuses)}{where}; nothing to export")
    modality = ds.modality or "ct"
    plan = [(e, *_targets(fmt, e.name, e.split or "train", subset, modality)) for e in entries]
    if not force:
        clashes = [output / r for _, *rels in plan for r in rels if r and (output / r).exists()]
        for name in ("dataset.json", "spineseg_export.json") if fmt == "nnunet" else ("spineseg_export.json",):
            if (output / name).exists():
                clashes.append(output / name)
        if clashes:
            check_force(clashes[0], force, what=f"{len(clashes)} file(s) would be overwritten:")
    return plan


def _export_case(ds: AnnotationDataset, fmt: str, output: Path, e, img_rel: str, lab_rel: str,
                 extra_rel: str | None, force: bool) -> tuple[list, dict]:
    """Write the image, the current label version (and the centroids) of case ``e``; returns
    ``(label ids, the case's record)``."""
    v = e.current_version
    label_path = ds.root / v["file"]
    _copy_or_convert(ds.root / e.image, output / img_rel, force)
    label = read_image(label_path)
    ids = label_ids(label.array)
    if fmt == "nnunet":
        mapping = nnunet_label_map(ids)
        lut = np.zeros(max(ids, default=0) + 1, np.uint16)
        for vid in ids:
            lut[vid] = mapping[vid]
        arr = lut[label.array]
        write_image(label.with_array(arr.astype(np.uint8 if arr.max(initial=0) < 256 else np.uint16)),
                    output / lab_rel, force=force)
    else:
        _copy_or_convert(label_path, output / lab_rel, force)
    if extra_rel:
        write_json_atomic(output / extra_rel, verse_centroids(label))
    record = {"case": e.name, "split": e.split, "status": e.status, "version": v["version"],
              "kind": v.get("kind"), "user": v.get("user"), "created": v.get("created"),
              "reviewed_by": v.get("reviewed_by"), "sha256": v.get("sha256"),
              "image": img_rel, "label": lab_rel, "labels": [_label_name(i) for i in ids]}
    return ids, record


def _nnunet_dataset_json(ds: AnnotationDataset, plan: list, all_ids: set) -> dict:
    """nnU-Net's ``dataset.json`` for the exported cases (module docstring)."""
    mapping = nnunet_label_map(all_ids)
    used = sorted(set(range(1, 28)) | {mapping[v] for v in all_ids if v})
    inverse = {c: v for v, c in mapping.items()}
    labels = {"background": 0}
    for c in used:
        labels[_label_name(inverse[c])] = c
    return {
        "channel_names": {"0": "CT" if (ds.modality or "ct") == "ct" else "MR"},
        "labels": labels,
        "numTraining": sum(1 for e, *_ in plan if (e.split or "train") != "test"),
        "file_ending": ".nii.gz",
        "name": ds.name,
        "description": f"exported by SpineSeg from the annotation dataset {ds.name} ({len(plan)} annotated cases)",
        "spineseg_verse_ids": {str(c): inverse[c] for c in used},
    }


def export_dataset(ds: AnnotationDataset, fmt: str, output, *, statuses=ANNOTATED, splits=None,
                   subset: str | None = None, force: bool = False, progress=None, log=None) -> dict:
    """Write the annotated cases of ``ds`` to ``output`` in format ``fmt`` (module docstring);
    returns the export record (also written to ``spineseg_export.json``)."""
    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r} (use one of {', '.join(FORMATS)})")
    log = log or (lambda message: None)
    output = Path(output)
    plan = _plan(ds, fmt, output, statuses, splits, subset or ds.name, force)
    output.mkdir(parents=True, exist_ok=True)

    all_ids: set = set()
    record_cases = []
    for k, (e, img_rel, lab_rel, extra_rel) in enumerate(plan):
        if progress is not None:
            progress.step(f"case {e.name} ({k + 1}/{len(plan)})", k / len(plan))
        ids, case_record = _export_case(ds, fmt, output, e, img_rel, lab_rel, extra_rel, force)
        all_ids |= set(ids)
        record_cases.append(case_record)
        log(f"{e.name}: version {case_record['version']} ({e.status}) -> {lab_rel}")

    record = {"format": fmt, "exported": now_iso(), "dataset": str(ds.root.resolve()), "dataset_name": ds.name,
              "label_convention": "VerSe ids" if fmt != "nnunet" else "nnU-Net classes (see dataset.json)",
              "statuses": list(statuses), "cases": record_cases}
    if fmt == "nnunet":
        dataset_json = _nnunet_dataset_json(ds, plan, all_ids)
        write_text_atomic(output / "dataset.json", json.dumps(dataset_json, indent=2))
        record["nnunet_classes"] = dataset_json["spineseg_verse_ids"]
    elif fmt == "ctspine1k":
        odd = sorted(v for v in all_ids if v in (26, 28) or v > 25)
        if odd:
            record["note"] = (f"CTSpine1K labels C1-L6 (1-25); ids {', '.join(map(str, odd))} "
                              f"({', '.join(_label_name(v) for v in odd)}) are kept as VerSe ids")
    write_json_atomic(output / "spineseg_export.json", record)
    if progress is not None:
        progress.step("done", 1.0)
    return record
