"""Extension-level tests run inside 3D Slicer (registered with ``slicer_add_python_unittest`` in this folder's
CMakeLists.txt; ctest starts ``Slicer --testing`` and ``slicer.testing.runUnitTest`` loads this file by name).

They must pass on an extension build machine: no network (the bundled sample is registered with ``file://`` URIs)
and no PyTorch or scikit-image (what needs them is skipped with a message saying so). The modules' own self-tests
(``SpineSegTest``, ``SpineSegIISTest``, ...) are registered by the modules; Slicer's generic tests
(``WITH_GENERIC_TESTS``) create and reload each module's panel.

Console use (Slicer's Python console, or ``Slicer --python-code``)::

    import slicer.testing
    slicer.testing.runUnitTest(["<checkout>/Testing/Python"], "SpineSegExtensionTest")
"""

import importlib
import importlib.util
import unittest

import slicer
from slicer import ScriptedLoadableModule    # not the class itself: unittest would run it as a test too

#: the extension's scripted modules (one folder each, all installed into Slicer's qt-scripted-modules folder)
MODULES = ("SpineSeg", "SpineSegIIS", "SpineSegAnnotate")
SAMPLE_NAME = "SpineSegChestCT"


class SpineSegExtensionTest(ScriptedLoadableModule.ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        for name in ("test_modules_loaded", "test_sample_data_offline", "test_dependency_check",
                     "test_iis_self_test_without_torch"):
            self.setUp()
            try:
                getattr(self, name)()
            except unittest.SkipTest as skipped:      # "Reload and Test" runs the others all the same
                self.delayDisplay(f"{name} skipped: {skipped}")

    def test_modules_loaded(self):
        """Every module of the extension is loaded by Slicer and its Python module imports SpineSegLib."""
        for name in MODULES:
            module = getattr(slicer.modules, name.lower(), None)
            self.assertIsNotNone(module, f"module {name} is not loaded")
            python_module = importlib.import_module(name)
            for suffix in ("", "Logic", "Widget", "Test"):
                self.assertTrue(hasattr(python_module, name + suffix), f"{name}.py has no class {name}{suffix}")
        import SpineSegLib

        self.assertTrue(SpineSegLib.__file__)
        self.delayDisplay(f"Modules loaded: {', '.join(MODULES)}")

    def test_sample_data_offline(self):
        """The bundled chest CT loads through Sample Data from local files (no download)."""
        try:
            import SampleData
        except ImportError:
            self.skipTest("the Sample Data module is not loaded in this Slicer")
        from SpineSegLib.core.image import read_image
        from SpineSegLib.core.resources import resource_dir
        from SpineSegLib.slicer.widget_samples import SAMPLE, sample_sources

        sources = sample_sources()
        self.assertEqual([s["sampleName"] for s in sources], [SAMPLE_NAME])
        self.assertTrue(all(uri.startswith("file:") for uri in sources[0]["uris"]), sources[0]["uris"])
        nodes = SampleData.downloadSample(SAMPLE_NAME)
        nodes = nodes if isinstance(nodes, (list, tuple)) else [nodes]
        volumes = [n for n in nodes if n is not None and n.IsA("vtkMRMLScalarVolumeNode")]
        self.assertEqual(len(volumes), 1)
        expected = read_image(resource_dir("samples") / SAMPLE / "image.nii.gz")
        self.assertEqual(tuple(volumes[0].GetImageData().GetDimensions()), tuple(expected.size))
        self.delayDisplay("Bundled sample loaded from local files")

    def test_dependency_check(self):
        """The packages Slicer ships satisfy SpineSeg's minimums; what is missing is reported with a reason."""
        from SpineSegLib.slicer import dependencies

        shipped = [r for r in dependencies.IIS + dependencies.CLASSICAL if r.comes_with_slicer]
        self.assertEqual(dependencies.check(tuple(shipped)), [], "a package that comes with Slicer is refused")
        for missing in dependencies.check(dependencies.IIS) + dependencies.check(dependencies.CLASSICAL):
            self.assertTrue(missing.reason, missing)
        self.delayDisplay("Dependency check agrees with this Slicer")

    def test_iis_self_test_without_torch(self):
        """Without PyTorch (a build machine) the IIS module's self-test is skipped with a message, not failed."""
        if importlib.util.find_spec("torch") is not None:
            self.skipTest("PyTorch is installed here: the SpineSegIIS module's own self-test runs IIS")
        import SpineSegIIS

        with self.assertRaises(unittest.SkipTest) as caught:
            SpineSegIIS.SpineSegIISTest().runTest()
        self.assertIn("torch", str(caught.exception))
        self.delayDisplay(f"IIS self-test skipped: {caught.exception}")
