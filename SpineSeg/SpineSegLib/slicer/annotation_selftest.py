"""The annotation panel's self-test (run by ``SpineSegAnnotate``'s ScriptedLoadableModuleTest in 3D Slicer and by
``Testing/test_annotation_panel.py`` under ``slicer-core``): the panel's logic on a small dataset made from the
bundled sample (LIDC-IDRI-0001 at 2.5 mm and its vertebra labels, imported as a prediction).

Open, Next (the case loads as a volume and named, coloured segments), an edit (part of a segment erased through
its binary labelmap, as the Segment Editor's eraser does), Save (a new version, status ``corrected``), Relabel
(the names follow in the scene and on disk), Review. Fine-tuning needs torch: without it the step is skipped
with a message, as on the extension build machines; with it the bundled CT model is fine-tuned for a few
iterations in a child process.

Console use (Slicer's Python console)::

    from SpineSegLib.slicer.annotation_selftest import run_self_test
    run_self_test(slicer.mrmlScene, "/tmp/annotate-selftest", log=print)
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import slicer
from vtk.util import numpy_support

from SpineSegLib.core.errors import SpineSegError
from SpineSegLib.core.labels import name_of
from SpineSegLib.core.resources import resource_dir
from SpineSegLib.annotation.creation import create_dataset
from SpineSegLib.slicer.annotation_logic import AnnotationLogic

SAMPLE = "LIDC-IDRI-0001-2.5mm"
CT_MODEL = "ct-vertebrae-experimental.pt"


def erase_part(segmentation_node, segment_name: str, fraction: float = 0.5) -> int:
    """Erase the first ``fraction`` of a segment's voxels along the last array axis (as an eraser stroke would),
    through the segment's binary labelmap; returns the number of voxels erased."""
    segmentation = segmentation_node.GetSegmentation()
    segment_id = segmentation.GetSegmentIdBySegmentName(segment_name)
    if not segment_id:
        raise SpineSegError(f"no segment {segment_name!r}")
    labelmap = slicer.vtkOrientedImageData()
    if not segmentation_node.GetBinaryLabelmapRepresentation(segment_id, labelmap):
        raise SpineSegError(f"segment {segment_name!r} has no binary labelmap")
    scalars = numpy_support.vtk_to_numpy(labelmap.GetPointData().GetScalars())
    array = scalars.reshape(labelmap.GetDimensions()[::-1]).copy()
    inside = np.nonzero(array.any(axis=(0, 1)))[0]
    cut = inside[0] + int(round(len(inside) * fraction))
    erased = int(np.count_nonzero(array[:, :, :cut]))
    array[:, :, :cut] = 0
    scalars[:] = array.ravel()
    labelmap.Modified()
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    if not logic.SetBinaryLabelmapToSegment(labelmap, segmentation_node, segment_id, logic.MODE_REPLACE):
        raise SpineSegError(f"could not write segment {segment_name!r} back")
    return erased


def sample_dataset(folder) -> Path:
    """A one-case annotation dataset in ``folder/ds`` from the bundled sample, its labels as a prediction."""
    folder = Path(folder)
    sample = resource_dir("samples") / SAMPLE
    inputs = folder / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(sample / "image.nii.gz", inputs / "lidc_img.nii.gz")
    shutil.copyfile(sample / "vertebrae.nii.gz", inputs / "lidc_vb.nii.gz")
    ds = create_dataset(folder / "ds", [str(inputs / "lidc_img.nii.gz")], [str(inputs / "lidc_vb.nii.gz")],
                        split="1,0,0", label_status="predicted", modality="ct")
    return ds.root


def _check(condition, message: str) -> None:
    if not condition:
        raise SpineSegError("self-test: " + message)


def run_self_test(scene, folder, log: Callable[[str], None] = print, finetune_iterations: int = 2,
                  python: Optional[str] = None) -> dict:
    """Run the panel's logic through one case (module docstring); returns what it saw. Raises on a failure."""
    logic = AnnotationLogic(scene, user="selftest", python=python)
    logic.open(sample_dataset(folder))
    _check([r["status"] for r in logic.cases()] == ["predicted"], "the case should be predicted")
    case = logic.next_case()
    names = [case.segmentation.GetSegmentation().GetNthSegment(i).GetName()
             for i in range(case.segmentation.GetSegmentation().GetNumberOfSegments())]
    log(f"loaded case {case.name}: segments {', '.join(names)}")
    _check(names and not logic.has_unsaved_edits(), "segments named after the vertebrae, nothing edited yet")

    lowest = names[-1]
    erased = erase_part(case.segmentation, lowest)
    _check(logic.has_unsaved_edits(), "the edit should show as unsaved")
    version = logic.save(note="self-test edit")
    entry = logic.dataset.case(case.name)
    _check(entry.status == "corrected" and entry.current == version == 2, "the save should be version 2, corrected")
    log(f"erased {erased} voxels of {lowest}; saved version {version}")

    first, expected = names[0], [name_of(_id_above(n)) for n in names]     # "the top one is one higher up"
    v_relabel, result = logic.relabel(first, expected[0])
    renamed = logic.segment_names()
    _check(v_relabel == 3 and sorted(renamed) == sorted(expected), f"expected {expected} after relabelling: {renamed}")
    log(f"relabelled ({result.describe()}): segments {', '.join(renamed)}; version {v_relabel}")
    reviewed = logic.review(user="selftest-reviewer")
    _check(logic.dataset.case(case.name).status == "reviewed", "the case should be reviewed")
    out = {"case": case.name, "segments": names, "erased": erased, "relabelled": renamed, "reviewed": reviewed}

    if finetune_iterations and importlib.util.find_spec("torch") is None:
        log("fine-tuning skipped: PyTorch is not installed (install it from the SpineSeg IIS module)")
    elif finetune_iterations:
        model = resource_dir("models") / CT_MODEL
        outcome = logic.finetune(model, Path(folder) / "finetuned.pt", iterations=finetune_iterations,
                                 evaluate=False, device="cpu", threads=1)
        _check(outcome.output.is_file(), "the fine-tuned weights should exist")
        log(f"fine-tuned {finetune_iterations} iteration(s): {outcome.describe()}")
        out["finetuned"] = str(outcome.output)
    logic.close_case()
    return out


def _id_above(name: str) -> int:
    """The id one step up the spine from vertebra ``name``."""
    from SpineSegLib.core.labels import by_name, next_label

    return next_label(by_name(name).label, -1)
