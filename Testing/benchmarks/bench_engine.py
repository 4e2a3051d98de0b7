"""Wall and CPU time of Run and Step as the Slicer logics do them, before and after the engine contract.

* classical Run: ``ClassicalLogic.run`` on LIDC-IDRI-0001 (full resolution; since the engine contract in a child);
* IIS Run: ``IISLogic.segment`` on MyoSegmenTUM 44 with ``mr-vertebral-bodies`` (a child process before and after);
* IIS Step: ``IISLogic.stepper`` -- the first pass, 5 passes, then ``run_to_end`` (before: torch in this process;
  after: the same engine child as Run, halted after each pass).

"Before" is any older checkout with the same module paths, e.g. the committed code::

    git worktree add /tmp/head HEAD
    PYTHONPATH=/tmp/head/SpineSeg OMP_NUM_THREADS=2 .venv/bin/python Testing/benchmarks/bench_engine.py   # before
    OMP_NUM_THREADS=2 .venv/bin/python Testing/benchmarks/bench_engine.py                                 # after

CPU seconds include the child processes (``RUSAGE_CHILDREN``). Options: ``--threads 2`` (default), ``--skip-iis``,
``--skip-classical``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from bench_slicer_logic import Timer  # the same timing (a sibling script: this folder is on sys.path)

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("SPINESEG_DATA", REPO.parent / "shared" / "data"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-iis", action="store_true")
    parser.add_argument("--skip-classical", action="store_true")
    args = parser.parse_args(argv)

    import SpineSegLib
    from SpineSegLib.core.image import read_image
    from SpineSegLib.slicer.scene import new_scene
    from SpineSegLib.slicer.volumes import image_to_volume

    print(f"SpineSegLib from {Path(SpineSegLib.__file__).parent}; threads {args.threads}", flush=True)
    if not args.skip_classical:
        from SpineSegLib.slicer.classical_logic import ClassicalLogic

        ct = read_image(DATA / "ct" / "lidc-idri-0001" / "image.nii.gz")
        scene = new_scene()
        volume = image_to_volume(scene, ct, "LIDC-IDRI-0001")
        with Timer("classical Run (LIDC-IDRI-0001)"):
            ClassicalLogic(scene).run(volume)
    if not args.skip_iis:
        from SpineSegLib.slicer.iis_logic import IISLogic

        mr = read_image(DATA / "mr" / "vertebral-bodies-myosegmentum" / "44_img.nii.gz")
        scene = new_scene()
        volume = image_to_volume(scene, mr, "MyoSegmenTUM 44")
        logic = IISLogic(scene)
        model = str(Path(SpineSegLib.__file__).parent / "resources" / "models" / "mr-vertebral-bodies.pt")
        with Timer("IIS Run (MyoSegmenTUM 44)"):
            logic.segment(volume, model, device="cpu", threads=args.threads, timeout=1800)
        with Timer("IIS Step: first pass"):
            stepper = logic.stepper(volume, model, device="cpu", threads=args.threads)
            stepper.step(timeout=600)
        with Timer("IIS Step: 4 more passes"):
            for _ in range(4):
                stepper.step(timeout=600)
        with Timer("IIS Step: run to end"):
            stepper.run_to_end(timeout=1800)
    return 0


if __name__ == "__main__":
    sys.exit(main())
