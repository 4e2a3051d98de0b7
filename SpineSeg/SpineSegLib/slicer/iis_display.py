"""The temporary nodes that show where the IIS traversal is while it runs or steps: the patch (an ROI box), the
current fragment (a temporary segment), the traversal's memory (a label map on the model grid) and the vertebrae
found so far (a table). Every such node carries the attribute ``SpineSeg.Temporary``; :meth:`PatchDisplay.remove`
takes them all away again. Runs in 3D Slicer and under ``slicer-core``.

Console use::

    from SpineSegLib.slicer.iis_display import PatchDisplay
    display = PatchDisplay(scene, volume_node)
    display.show_box(centre_lps=(0, 0, 0), size_mm=(96, 96, 96), axes_lps=np.eye(3))
    display.remove()
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from SpineSegLib.core.image import Image
from SpineSegLib.slicer.colours import find_vertebra_colour_table
from SpineSegLib.slicer.markups import add_box, set_box
from SpineSegLib.slicer.scene import place_next_to, remove_nodes
from SpineSegLib.slicer.segmentations import labelmap_to_segmentation
from SpineSegLib.slicer.tables import add_table, set_table
from SpineSegLib.slicer.volumes import image_to_volume

FRAGMENT_LABEL = 250          # outside the vertebra table: the temporary fragment segment is not coded
FRAGMENT_COLOUR = (1.0, 0.9, 0.1)
PATCH_COLOUR = (0.3, 0.6, 1.0)


class PatchDisplay:
    """The temporary nodes that show where the traversal is: the patch box, the current fragment, the memory."""

    def __init__(self, scene, volume_node):
        self.scene = scene
        self.volume_node = volume_node
        self._had_colour_table = find_vertebra_colour_table(scene) is not None
        self.box = None
        self.fragment = None
        self.memory = None
        self.memory_colours = None
        self.found = None

    def show_box(self, centre_lps, size_mm, axes_lps) -> None:
        axes = np.asarray(axes_lps, dtype=float).T      # PatchBox keeps one axis per row; ROI wants columns
        if self.box is None or self.box.GetScene() is None:
            self.box = add_box(self.scene, centre_lps, size_mm, axes, name="IIS patch", colour=PATCH_COLOUR,
                               next_to=self.volume_node)
            self.box.SetAttribute("SpineSeg.Temporary", "1")
        else:
            set_box(self.box, centre_lps, size_mm, axes)

    def show_record(self, record: dict) -> None:
        """A step as ``spineseg iis --steps-dir`` writes it (dict)."""
        box = record.get("box")
        if box:
            self.show_box(box["centre_lps"], box["size_mm"], box["axes_lps"])

    def show_fragment(self, fragment: Optional[Image], title: str) -> None:
        if self.fragment is not None:
            self.fragment.GetSegmentation().RemoveAllSegments()
        if fragment is None or not np.any(fragment.array):
            return
        labels = fragment.with_array(np.where(fragment.array > 0, FRAGMENT_LABEL, 0).astype(np.uint8))
        if self.fragment is None or self.fragment.GetScene() is None:
            self.fragment = labelmap_to_segmentation(self.scene, labels, name="IIS fragment")
            self.fragment.SetAttribute("SpineSeg.Temporary", "1")
            place_next_to(self.fragment, self.volume_node)
        else:
            labelmap_to_segmentation(self.scene, labels, name="IIS fragment", node=self.fragment)
        segmentation = self.fragment.GetSegmentation()
        segment = segmentation.GetNthSegment(0)
        segment.SetName(title)
        segment.SetColor(*FRAGMENT_COLOUR)

    def show_memory(self, memory: np.ndarray, grid: Image) -> None:
        binary = Image((np.asarray(memory) > 0).astype(np.uint8), grid.spacing, grid.origin, grid.direction)
        if self.memory is None or self.memory.GetScene() is None:
            self.memory_colours = self.scene.AddNewNodeByClass("vtkMRMLColorTableNode", "IIS memory colours")
            self.memory_colours.SetTypeToUser()
            self.memory_colours.SetNumberOfColors(2)
            self.memory_colours.SetColor(0, "background", 0, 0, 0, 0)
            self.memory_colours.SetColor(1, "in memory", 0.35, 0.55, 1.0, 1.0)
            self.memory_colours.SetAttribute("SpineSeg.Temporary", "1")
            self.memory = image_to_volume(self.scene, binary, "IIS memory", labelmap=True,
                                          colour_table=self.memory_colours)
            self.memory.SetAttribute("SpineSeg.Temporary", "1")
            place_next_to(self.memory, self.volume_node)
        else:
            image_to_volume(self.scene, binary, node=self.memory, labelmap=True, colour_table=self.memory_colours)

    def show_found(self, rows: list[dict]) -> None:
        if not rows:
            return
        if self.found is None or self.found.GetScene() is None:
            self.found = add_table(self.scene, rows, "IIS vertebrae so far", next_to=self.volume_node)
            self.found.SetAttribute("SpineSeg.Temporary", "1")
        else:
            set_table(self.found, rows)

    def nodes(self) -> list:
        return [n for n in (self.box, self.fragment, self.memory, self.memory_colours, self.found)
                if n is not None and n.GetScene() is not None]

    def remove(self) -> None:
        remove_nodes(*self.nodes())
        self.box = self.fragment = self.memory = self.memory_colours = self.found = None
        # the fragment made segmentations create the scene's vertebra colour table: remove it again when nothing uses it
        table = find_vertebra_colour_table(self.scene)
        if table is not None and not self._had_colour_table and not _colour_table_used(self.scene, table):
            remove_nodes(table)


def _colour_table_used(scene, table) -> bool:
    segmentations = scene.GetNodesByClass("vtkMRMLSegmentationNode")
    for i in range(segmentations.GetNumberOfItems()):
        node = segmentations.GetItemAsObject(i)
        if node.GetLabelmapConversionColorTableNodeID() == table.GetID():
            return True
    displays = scene.GetNodesByClass("vtkMRMLDisplayNode")
    for i in range(displays.GetNumberOfItems()):
        if displays.GetItemAsObject(i).GetColorNodeID() == table.GetID():
            return True
    return False


def model_grid_of(box) -> Image:
    """The model grid's geometry (an empty Image) from any :class:`~SpineSegLib.iis.infer.patches.PatchBox` on it."""
    direction = np.asarray(box.axes_lps, dtype=float).T
    spacing = np.asarray(box.spacing_mm, dtype=float)
    start_ijk = np.asarray(box.start_voxel[::-1], dtype=float)
    origin = np.asarray(box.origin_lps, dtype=float) - direction @ (spacing * start_ijk)
    return Image(np.zeros((1, 1, 1), np.uint8), tuple(spacing), tuple(origin), direction)
