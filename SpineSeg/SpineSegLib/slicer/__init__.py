"""SpineSeg in 3D Slicer's MRML scene: the Qt-free logic of the Slicer modules and the bridge between SpineSeg's
results and MRML nodes.

This package is the only part of SpineSegLib that touches MRML: its modules import ``slicer`` and ``vtk`` (only the
panels -- ``classical_widget``, ``iis_widget``, ``annotation_widget``, ``widget_base``, ``widget_support`` -- import
``qt``/``ctk``, which exist only inside the Slicer application, and nothing else here imports them); no other
package imports any of them
(``Testing/test_slicer_modules.py`` checks it) nor this package (``scripts/import_graph.py``: it is the top layer). Every function takes the scene or its nodes as parameters and
uses only MRML classes, the static calls of Slicer's module logics, vtk and numpy, so the same code runs inside 3D
Slicer (``slicer.mrmlScene``) and under the ``slicer-core`` wheel, where the tests drive it (a scene from
:func:`~SpineSegLib.slicer.scene.new_scene`). The module files ``SpineSeg.py`` / ``SpineSegIIS.py`` only
declare the modules and build the panels kept here, which delegate to the logic classes.

Nodes <-> SpineSeg data (points in LPS mm, as everywhere in SpineSeg; conventions in :mod:`.volumes`):

* :mod:`.scene` -- a scene with the logics SpineSeg needs, the subject hierarchy, :func:`~.scene.scene_transaction`
  (a failed block adds nothing) and removing nodes cleanly;
* :mod:`.volumes` -- :class:`~SpineSegLib.core.image.Image` <-> scalar / label map volume nodes, exact geometry;
  LPS <-> RAS;
* :mod:`.colours` -- the vertebra colour table node and segment terminology strings;
* :mod:`.segmentations` -- label maps <-> segmentation nodes (one named, coloured, coded segment per vertebra;
  stable exported ids), segment tags;
* :mod:`.markups` -- curves, point lists and oriented ROI boxes from LPS points;
* :mod:`.tables` -- table nodes with typed columns and units;
* :mod:`.storage` -- saving and loading nodes as files, scene bundles (``.mrb``).

The logic of the two modules:

* :mod:`.common` -- what both share: checking the input volume node, reading a reference, exporting;
* :mod:`.classical_logic` -- :class:`~.classical_logic.ClassicalLogic`: the classical pipeline on a volume node,
  its intermediates on the slice a view shows, metrics;
* :mod:`.iis_logic` -- :class:`~.iis_logic.IISLogic`: IIS in a child process, run-time estimates and the device
  probe; :mod:`.iis_stepper` (one network pass per click, in process), :mod:`.iis_display` (the temporary nodes
  showing the traversal), :mod:`.iis_results` (importing a result, per-vertebra table, evaluation);
* :mod:`.classical_widget`, :mod:`.iis_widget` -- the modules' panels (Qt, only inside Slicer) over
  :mod:`.widget_base` (parameter node, dialogs, exports, the slice view to follow) and :mod:`.widget_support`
  (installing dependencies, reloading the Lib); their Qt-free choices in :mod:`.widget_choices` (the model for an
  input's modality, the start point ...); :mod:`.widget_samples` (the sample in Sample Data); :mod:`.self_tests`;
* :mod:`.process` -- the child-process runner (progress lines, cancel kills the process tree; no MRML);
* :mod:`.dependencies` -- which Python packages are missing inside Slicer and how to install them (no MRML).

Console use (Slicer's Python console, or ``slicer-core``)::

    from SpineSegLib.slicer.scene import new_scene
    from SpineSegLib.slicer.volumes import image_to_volume
    from SpineSegLib.slicer.segmentations import labelmap_to_segmentation, segmentation_to_image
    scene = new_scene()                                   # in Slicer: slicer.mrmlScene
    ct = image_to_volume(scene, read_image("ct.nii.gz"), "CT")
    seg = labelmap_to_segmentation(scene, read_image("vertebrae.nii.gz"), reference_volume=ct)
    ids = segmentation_to_image(seg, reference_volume=ct)  # VerSe ids on the CT grid
"""
