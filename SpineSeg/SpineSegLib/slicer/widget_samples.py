"""The bundled sample (LIDC-IDRI-0001 at 2.5 mm, with its reference vertebra label map) registered with 3D Slicer's
Sample Data module, so that "Sample Data > SpineSeg" loads it like any other sample.

The files ship inside SpineSegLib (``resources/samples``, :func:`~SpineSegLib.core.resources.resource_dir`);
SampleData copies them into its cache from local ``file://`` URIs and checks them by SHA-256. :func:`sample_sources`
is Qt-free (tested under ``slicer-core``); :func:`register_sample_data` takes Slicer's ``SampleData`` module.

Console use (Slicer's Python console)::

    import SampleData
    from SpineSegLib.slicer.widget_samples import register_sample_data
    register_sample_data(SampleData)
    SampleData.downloadSample("SpineSegChestCT")      # [the CT volume node, the reference segmentation node]
"""

from __future__ import annotations

from SpineSegLib.core.files import sha256_of
from SpineSegLib.core.resources import resource_dir

CATEGORY = "SpineSeg"
SAMPLE = "LIDC-IDRI-0001-2.5mm"


def sample_sources() -> list[dict]:
    """The keyword arguments of ``SampleDataLogic.registerCustomSampleDataSource`` for each bundled sample."""
    folder = resource_dir("samples") / SAMPLE
    files = [(folder / "image.nii.gz", "SpineSeg-LIDC-IDRI-0001-2.5mm.nii.gz", "LIDC-IDRI-0001", "VolumeFile"),
             (folder / "vertebrae.nii.gz", "SpineSeg-LIDC-IDRI-0001-2.5mm-vertebrae.nii.gz",
              "LIDC-IDRI-0001 vertebrae (reference)", "SegmentationFile")]
    present = [f for f in files if f[0].is_file()]
    if not present:
        return []
    return [dict(category=CATEGORY, sampleName="SpineSegChestCT",
                 uris=[path.resolve().as_uri() for path, *_ in present],
                 fileNames=[name for _, name, *_ in present],
                 nodeNames=[node for _, _, node, _ in present],
                 loadFileTypes=[kind for *_, kind in present],
                 checksums=[f"SHA256:{sha256_of(path)}" for path, *_ in present])]


def register_sample_data(sample_data_module, title: str = "SpineSeg") -> int:
    """Register the bundled samples with Slicer's ``SampleData`` module; returns how many were registered."""
    logic = sample_data_module.SampleDataLogic
    sources = sample_sources()
    if sources and hasattr(logic, "registerCustomSampleDataCategory"):     # Slicer >= 5.12
        logic.registerCustomSampleDataCategory(CATEGORY, title=title)
    for source in sources:
        logic.registerCustomSampleDataSource(**source)
    return len(sources)
