"""The modules' self-tests (Slicer's "Reload and Test", ``Slicer --testing``), kept in the Lib so that the module
files only call them. Each takes the running ``unittest.TestCase`` (a ``ScriptedLoadableModuleTest``: its
``assert*``, ``skipTest`` and ``delayDisplay``) and the module's logic, and works on the bundled sample
(LIDC-IDRI-0001 at 2.5 mm, no download). A test whose Python packages are missing (a build machine without
scikit-image or PyTorch) is skipped, saying what it needs.

Console use (Slicer's Python console)::

    import SpineSeg
    SpineSeg.SpineSegTest().runTest()        # runs classical_self_test and bad_input_self_test
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import slicer

from SpineSegLib.slicer import dependencies

SAMPLE_NAME = "LIDC-IDRI-0001"


def load_sample(scene=None):
    """The bundled chest CT sample as a scalar volume node."""
    from SpineSegLib.core.image import read_image
    from SpineSegLib.core.resources import resource_dir
    from SpineSegLib.slicer.volumes import image_to_volume
    from SpineSegLib.slicer.widget_samples import SAMPLE

    image = read_image(resource_dir("samples") / SAMPLE / "image.nii.gz")
    return image_to_volume(scene or slicer.mrmlScene, image, SAMPLE_NAME)


def skip_unless_installed(case, requirements, what: str) -> None:
    missing = dependencies.check(requirements)
    if missing:
        case.skipTest(f"{what} needs Python packages that are not installed: "
                      + "; ".join(m.reason for m in missing))


def slice_node(scene, name: str = "Red"):
    """The slice node of view ``name`` (one is added to a scene without views, as under slicer-core)."""
    from SpineSegLib.slicer.widget_choices import slice_node_named

    node = slice_node_named(scene, name)
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLSliceNode")
        node.SetLayoutName(name)
        node.SetOrientationToAxial()
    return node


def classical_self_test(case, logic) -> None:
    """The classical pipeline on the sample: one segment "Spine" of a plausible volume, the centerline, the slice
    markups following a slice view."""
    from SpineSegLib.slicer import markups, segmentations

    skip_unless_installed(case, dependencies.CLASSICAL, "the classical pipeline")
    case.delayDisplay("Loading the bundled chest CT sample")
    volume = load_sample()
    case.delayDisplay("Segmenting the spine")
    out = logic.run(volume)
    segmentation = out.segmentation.GetSegmentation()
    case.assertEqual(segmentation.GetNumberOfSegments(), 1)
    case.assertEqual(segmentation.GetNthSegment(0).GetName(), "Spine")
    mask = segmentations.segmentation_to_image(out.segmentation, volume)
    volumeMl = float((mask.array > 0).sum()) * mask.voxel_volume_mm3 / 1000.0
    case.assertGreater(volumeMl, 100.0)      # a chest CT shows at least ~10 vertebrae
    case.assertLess(volumeMl, 2000.0)
    points = markups.control_points_lps(out.centerline)
    case.assertGreater(len(points), 20)
    case.assertTrue(np.allclose(points, out.result.centerline_curve_lps, atol=1e-3))
    red = slice_node(slicer.mrmlScene)
    logic.follow_slice_node(out, red)
    entry = out.result.slices[len(out.result.slices) // 3]
    red.SetSliceOffset(entry.z_mm)
    shown = markups.control_points_lps(out.slice_display.lines["H1"])
    case.assertTrue(np.allclose(shown[:, :2], np.asarray(entry.h1)[:, :2], atol=1e-2))
    logic.stop_following(out)
    case.delayDisplay("Test passed")


def bad_input_self_test(case, logic) -> None:
    """No input, or a flat one, is refused before anything is added to the scene."""
    from SpineSegLib.core.errors import InputError
    from SpineSegLib.core.image import Image
    from SpineSegLib.slicer import volumes

    flat = volumes.image_to_volume(slicer.mrmlScene, Image(np.full((1, 64, 64), -1000, np.int16)), "flat")
    count = slicer.mrmlScene.GetNumberOfNodes()
    with case.assertRaises(InputError):
        logic.run(None)
    with case.assertRaises(InputError):
        logic.run(flat)
    case.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), count)       # nothing added
    case.delayDisplay("Bad input refused")


def _iis_model(folder: str):
    """The smallest released bundled CT model, else a tiny randomly initialised one (the test then checks the
    result's structure, not its accuracy): ``(path, bundled)``."""
    from SpineSegLib.iis.model.catalog import list_models

    bundled = [m for m in list_models() if m.modality == "ct" and not m.experimental]
    if bundled:
        return str(min(bundled, key=lambda m: m.size_mb).path), True
    import torch

    from SpineSegLib.iis.model.checkpoint import save_checkpoint
    from SpineSegLib.iis.model.config import IISConfig
    from SpineSegLib.iis.model.network import IISNet

    torch.manual_seed(0)
    net = IISNet(IISConfig(width=4, levels=2, head_width=4, patch_size=(32, 32, 32), voxel_size_mm=(4.0, 4.0, 4.0)))
    with torch.no_grad():   # random weights; the output layers say "vertebra everywhere, L1, complete"
        net.segmentation_head.bias.fill_(8.0)
        net.label_head.dense.bias.fill_(20.0)
        net.completeness_head.dense.bias.fill_(8.0)
    return str(save_checkpoint(os.path.join(folder, "tiny-ct.pt"), net, {"purpose": "self-test"})), False


def iis_self_test(case, logic) -> None:
    """IIS on the sample in a child process (one segment per vertebra, matching the table), then three steps whose
    patch box the scene shows, then Cancel removing the temporary nodes."""
    from SpineSegLib.slicer import markups, segmentations

    skip_unless_installed(case, dependencies.IIS, "IIS")
    case.delayDisplay("Loading the bundled chest CT sample")
    volume = load_sample()
    with tempfile.TemporaryDirectory() as folder:
        model, bundled = _iis_model(folder)
        case.delayDisplay(f"Running IIS in a child process ({'bundled' if bundled else 'random tiny'} model)")
        out = logic.segment(volume, model, device="auto", timeout=1800)
        labels = segmentations.segment_labels(out.segmentation)
        case.assertGreater(len(labels), 0)
        case.assertEqual(sorted(labels.values()), sorted(r["label"] for r in out.rows))
        ids = segmentations.segmentation_to_image(out.segmentation, volume)
        case.assertEqual(set(int(v) for v in np.unique(ids.array) if v), set(labels.values()))

        case.delayDisplay("Stepping")
        stepper = logic.stepper(volume, model, device="cpu")
        for _ in range(3):
            step = stepper.step(timeout=600)
            if step is None or step.box is None:
                break
            centre, size, _ = markups.box_lps(stepper.display.box)
            case.assertTrue(np.allclose(centre, step.box.centre_lps, atol=1e-3))
            case.assertTrue(np.allclose(size, step.box.size_mm, atol=1e-3))
        count = slicer.mrmlScene.GetNumberOfNodes()
        stepper.cancel()
        case.assertLess(slicer.mrmlScene.GetNumberOfNodes(), count)     # temporary nodes removed
    case.delayDisplay("Test passed")
