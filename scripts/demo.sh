#!/usr/bin/env bash
# Set up SpineSeg in ./.venv (once) and segment the bundled sample chest CT.
# Writes demo-output/spine.nii.gz (mask), demo-output/spine.png (quick look), demo-output/vertebrae.nii.gz
# (one named label per vertebra) with its report in demo-output/report/, and prints the spine and per-vertebra
# metrics against the sample's reference vertebrae.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/spineseg ]; then
    "$PY" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet torch==2.13.0   # CPU build here; see README for GPU
    .venv/bin/python -m pip install --quiet -e '.[test]'
fi
SAMPLE=SpineSeg/SpineSegLib/resources/samples/LIDC-IDRI-0001-2.5mm   # also in the wheel
mkdir -p demo-output
.venv/bin/spineseg classical "$SAMPLE/image.nii.gz" -o demo-output/spine.nii.gz \
    --png demo-output/spine.png --vertebrae demo-output/vertebrae.nii.gz --report demo-output/report \
    --reference "$SAMPLE/vertebrae.nii.gz" --force
echo "demo: wrote demo-output/spine.nii.gz, spine.png, vertebrae.nii.gz and report/ (vertebrae.csv, .json, .png)"
