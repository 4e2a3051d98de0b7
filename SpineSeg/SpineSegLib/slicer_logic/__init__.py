"""Qt-free logic of the SpineSeg Slicer modules (MRML through the bridge, no ``qt``/``ctk``/``slicer.app``).

- ``common``          -- input checks, scene transactions (no half-made results), reference reading, export.
- ``classical_logic`` -- :class:`ClassicalLogic`: the classical spine segmentation of a CT volume node, its
  centerline, bounding lines, parabolas and DP points as markups, metrics against a reference.
- ``iis_logic``       -- :class:`IISLogic`: IIS vertebra segmentation in a child process, stepping through the
  traversal, per-vertebra table (volume, intensity, completeness, body heights), evaluation.

The module files ``SpineSeg.py`` / ``SpineSegIIS.py`` hold only Qt widgets and delegate to these classes, which
run unchanged in 3D Slicer (``slicer.mrmlScene``) and under ``slicer-core`` in the tests.
"""
