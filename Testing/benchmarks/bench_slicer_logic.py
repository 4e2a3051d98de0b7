"""Cost of the Slicer modules' logic under slicer-core: wall and CPU time of each step the GUI triggers.

* classical: ``ClassicalLogic.run`` on LIDC-IDRI-0001 (full resolution, 512 x 512 x 133), split into the
  backend (``segment_spine``) and adding the results to the scene; following a slice (one ``show_slice``);
* IIS: ``IISLogic.segment`` on a MyoSegmenTUM MR (child process ``spineseg iis``: start-up with the torch import,
  traversal, import of segmentation + per-vertebra table), one ``IISStepper`` pass, the per-vertebra
  measurements.

CPU seconds include the child processes (``resource.RUSAGE_CHILDREN``); on a machine shared with other work the
wall time grows, the CPU time much less. Usage::

    .venv/bin/python Testing/benchmarks/bench_slicer_logic.py [--model weights.pt] [--case 44]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("SPINESEG_DATA", REPO.parent / "shared" / "data"))


def cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class Timer:
    def __init__(self, name):
        self.name = name

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), cpu()
        return self

    def __exit__(self, *exc):
        print(f"{self.name:<55} wall {time.perf_counter() - self.wall:7.2f} s   cpu {cpu() - self.cpu:7.2f} s", flush=True)


def tiny_model(folder) -> str:
    import torch

    from SpineSegLib.iis.model.checkpoint import save_checkpoint
    from SpineSegLib.iis.model.config import IISConfig
    from SpineSegLib.iis.model.network import IISNet

    torch.manual_seed(0)
    net = IISNet(IISConfig.default_mr(width=4, levels=2, head_width=4, patch_size=(16, 16, 16), voxel_size_mm=(4.0,) * 3))
    with torch.no_grad():
        net.segmentation_head.bias.fill_(8.0)
        net.label_head.dense.bias.fill_(20.0)
        net.completeness_head.dense.bias.fill_(8.0)
    return str(save_checkpoint(Path(folder) / "tiny-mr.pt", net))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="IIS MR weights (default: a tiny random model)")
    parser.add_argument("--case", default="44", help="MyoSegmenTUM case")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")

    from SpineSegLib.slicer.scene import new_scene
    from SpineSegLib.slicer.volumes import image_to_volume
    from SpineSegLib.classical import segment_spine
    from SpineSegLib.core.image import read_image
    from SpineSegLib.slicer.classical_logic import ClassicalLogic
    from SpineSegLib.slicer.iis_logic import IISLogic

    ct = read_image(DATA / "ct" / "lidc-idri-0001" / "image.nii.gz")
    scene = new_scene()
    volume = image_to_volume(scene, ct, "LIDC")
    logic = ClassicalLogic(scene)
    with Timer("classical: segment_spine (backend only)"):
        segment_spine(ct)
    with Timer("classical: ClassicalLogic.run (backend + scene)"):
        out = logic.run(volume)
    entry = out.result.slices[len(out.result.slices) // 2]
    with Timer("classical: show_slice (x100)"):
        for _ in range(100):
            logic.show_slice(out, [0.0, 0.0, entry.z_mm])

    folder = DATA / "mr" / "vertebral-bodies-myosegmentum"
    mr_image = read_image(folder / f"{args.case}_img.nii.gz")
    scene = new_scene()
    volume = image_to_volume(scene, mr_image, "MR")
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or tiny_model(tmp)
        iis = IISLogic(scene)
        with Timer("IIS: IISLogic.segment (child process, import)"):
            result = iis.segment(volume, model, device="cpu", threads=args.threads)
        print(f"    {len(result.rows)} vertebrae: {', '.join(r['name'] for r in result.rows)}")
        stepper = iis.stepper(volume, model, device="cpu", threads=args.threads)
        with Timer("IIS: first step (model load, resampling, 1 pass)"):
            stepper.step()
        with Timer("IIS: 5 further steps (shown in the scene)"):
            for _ in range(5):
                stepper.step()
        stepper.cancel()
        from SpineSegLib.evaluation.measurements import measure_vertebrae

        with Timer("IIS: measure_vertebrae on the result"):
            measure_vertebrae(result.labels, mr_image)
    return 0


if __name__ == "__main__":
    sys.exit(main())
