"""Run every ``spineseg`` command on every variant of the robustness corpus and print the outcome table (issue 13).

Each cell is one run of the real command line in a subprocess (``python -m SpineSegLib ...``), judged
against the same command's answer on the group's original:

* ``same`` -- the answer matches within the tolerance of the legend (``same + note`` when the command also
  said what it did, e.g. which DICOM series it read or that it resampled a label map);
* ``refused`` -- exit status 2 and exactly one line on stderr starting ``spineseg: error:`` that names the
  variant's problem;
* failures: ``DIFFERENT``, ``SILENT``, ``REFUSED``, ``WRONG REASON``, ``UNCLEAR``, ``CRASHED`` (see
  :data:`robustness.verdicts.LEGEND`, printed below the table).

Commands per group: ``ct`` variants: classical, iis (``--model ct-vertebrae-experimental``: 4 s a run, fast
enough), dataset init with the variant's labels; ``labels`` variants (against / for the unchanged CT):
evaluate, dataset init, dataset add (the "import" into an existing dataset; it shares init's import code, so
it runs on the label maps only), dataset save; ``mr`` variants: classical (the original is refused, MR into
the classical pipeline, so every variant must be), iis (``--model mr-vertebral-bodies``), dataset init
(``--label-convention top-down:L1``). Every run gets ``OMP_NUM_THREADS=1`` (and iis ``--threads 1``).

Console use::

    python Testing/robustness/run_corpus.py                          # corpus + runs in a temporary folder
    python Testing/robustness/run_corpus.py --out /tmp/rob --markdown /tmp/rob/table.md --jobs 2
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))    # Testing/, when run as a script
from robustness.corpus import DATA, NOTE_OR_REFUSE, Variant, build_corpus  # noqa: E402
from robustness.verdicts import BASE_CASE, LEGEND, Cell, judge  # noqa: E402

COMMANDS = ("classical", "iis", "evaluate", "dataset init", "dataset add", "dataset save")
GROUP_COMMANDS = {"ct": ("classical", "iis", "dataset init"),
                  "labels": ("evaluate", "dataset init", "dataset add", "dataset save"),
                  "mr": ("classical", "iis", "dataset init")}
IIS_MODEL = {"ct": "ct-vertebrae-experimental", "mr": "mr-vertebral-bodies"}
TIMEOUT_S = 300



# -- planning and running ----------------------------------------------------------------------------------
def _argv(cell: Cell, corpus: Path, base_ds: Path) -> list:
    v, out = cell.variant, cell.folder
    image, labels = corpus / v.image, corpus / v.labels
    if cell.command == "classical":
        return ["classical", image, "-o", out / "mask.nii.gz", "--quiet"]
    if cell.command == "iis":
        return ["iis", image, "-o", out / "labels.nii.gz", "--model", IIS_MODEL[v.group], "--threads", "1",
                "--quiet", "--table", out / "table.tsv"]
    if cell.command == "evaluate":
        return ["evaluate", labels, corpus / "labels" / "original" / "vertebrae.nii.gz", "--json", out / "result.json"]
    if cell.command == "dataset init":
        extra = ["--label-convention", "top-down:L1"] if v.group == "mr" else []
        return ["dataset", "init", out / "ds", "--images", image, "--labels", labels, *extra]
    if cell.command == "dataset add":
        return ["dataset", "add", out / "ds", "--images", image, "--labels", labels]
    return ["dataset", "save", out / "ds", BASE_CASE, labels, "--user", "robustness"]


def plan(variants: list[Variant], corpus: Path, work: Path) -> list[Cell]:
    cells = []
    for v in variants:
        for command in GROUP_COMMANDS[v.group]:
            cell = Cell(v, command, work / command.replace(" ", "-") / f"{v.group}-{v.name}", corpus)
            cell.argv = [str(a) for a in _argv(cell, corpus, work / "base-ds")]
            cells.append(cell)
    return cells


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", SPINESEG_DATA=str(DATA), PYTHONUNBUFFERED="1")
    env.pop("PYTHONWARNINGS", None)
    return env


def spineseg(args, cwd: Path, timeout: float = TIMEOUT_S) -> tuple[int, str, str, float]:
    """Run ``python -m SpineSegLib ARGS``: (exit status, stdout, stderr, seconds); time-out -> status None."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "SpineSegLib", *map(str, args)], cwd=cwd, env=_env(),
                              capture_output=True, encoding="utf-8", errors="replace", timeout=timeout)
        return proc.returncode, proc.stdout, proc.stderr, time.perf_counter() - t0
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return None, out, f"timed out after {timeout} s", time.perf_counter() - t0


def make_base_dataset(corpus: Path, work: Path) -> Path:
    """The dataset that dataset add / save start from: the unchanged CT as case 'base', no labels."""
    image = work / "base-input" / BASE_CASE / "image.nii.gz"
    image.parent.mkdir(parents=True, exist_ok=True)
    if not image.exists():
        os.symlink((corpus / "ct" / "original" / "image.nii.gz").resolve(), image)
    base = work / "base-ds"
    if base.exists():
        shutil.rmtree(base)
    rc, out, err, _ = spineseg(["dataset", "init", base, "--images", image, "--link", "--modality", "ct"], work)
    if rc != 0:
        raise RuntimeError(f"cannot make the base dataset: {err.strip() or out.strip()}")
    return base


def run_cell(cell: Cell, base_ds: Path) -> Cell:
    if cell.folder.exists():
        shutil.rmtree(cell.folder)
    cell.folder.mkdir(parents=True)
    if cell.command in ("dataset add", "dataset save"):
        shutil.copytree(base_ds, cell.folder / "ds", symlinks=True)
    cell.rc, cell.stdout, cell.stderr, cell.seconds = spineseg(cell.argv, cell.folder)
    return cell


# -- the suite and its table -----------------------------------------------------------------------------
@dataclass
class Report:
    cells: list
    seconds: float
    jobs: int

    def failures(self, command: str | None = None) -> list:
        return [c for c in self.cells if not c.ok and command in (None, c.command)]

    def _rows(self):
        by_key = {(c.variant.key, c.command): c for c in self.cells}
        keys = list(dict.fromkeys(c.variant.key for c in self.cells))
        variants = {c.variant.key: c.variant for c in self.cells}
        for key in keys:
            yield variants[key], [by_key.get((key, cmd)) for cmd in COMMANDS]

    def summary(self) -> str:
        counts: dict = {}
        for c in self.cells:
            counts[c.outcome] = counts.get(c.outcome, 0) + 1
        per_command = ", ".join(f"{cmd} {sum(c.seconds for c in self.cells if c.command == cmd):.0f} s"
                                for cmd in COMMANDS)
        return (f"{len(self.cells)} cells: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
                + f"; {len(self.failures())} failing. Wall time {self.seconds:.0f} s with {self.jobs} parallel "
                f"runs (run time per command, summed over its runs: {per_command}).")

    def table(self) -> str:
        width = 13
        head = f"{'variant':22s} {'expected':14s} " + " ".join(f"{c:{width}s}" for c in COMMANDS)
        lines = [head, "-" * len(head)]
        for v, cells in self._rows():
            expect = {NOTE_OR_REFUSE: "note/refuse"}.get(v.expect, v.expect)
            lines.append(f"{v.key:22s} {expect:14s} "
                         + " ".join(f"{(c.outcome if c else '.'):{width}s}" for c in cells).rstrip())
        return "\n".join(lines)

    def noteworthy(self) -> list:
        """Cells worth a line below the table: all but the plain 'same' of exact variants."""
        return [c for c in self.cells if c.outcome != "same" or c.variant.geometry in ("resampled", "same-array")]

    def details(self) -> str:
        return "\n".join(f"{c.key}: {c.outcome} -- {c.detail}" for c in self.noteworthy())

    def variants_legend(self) -> str:
        seen = dict.fromkeys((c.variant.key, c.variant.how) for c in self.cells)
        return "\n".join(f"  {k:22s} {how}" for k, how in seen)

    def text(self) -> str:
        return "\n\n".join([self.table(), self.summary(), "Variants:\n" + self.variants_legend(), LEGEND,
                            "Refusals, notes, failures and the resampled variants' figures:\n" + self.details()])

    def markdown(self) -> str:
        out = ["| variant | expected | " + " | ".join(COMMANDS) + " |",
               "|---|---|" + "---|" * len(COMMANDS)]
        for v, cells in self._rows():
            marks = [(f"**{c.outcome}**" if not c.ok else c.outcome) if c else "." for c in cells]
            out.append(f"| `{v.key}` | {v.expect} | " + " | ".join(marks) + " |")
        out += ["", self.summary(), "", "Variants:", ""]
        out += [f"- `{c_key}`: {how}" for c_key, how in dict.fromkeys((c.variant.key, c.variant.how)
                                                                        for c in self.cells)]
        out += ["", "```", LEGEND, "```", "", "Refusals, notes, failures and the resampled variants' figures:", ""]
        out += [f"- `{c.key}`: {c.outcome} -- {c.detail}" for c in self.noteworthy()]
        return "\n".join(out) + "\n"


def run_suite(corpus_dir, work, jobs: int = 2, progress=print) -> Report:
    """Build the corpus (reused if there) under ``corpus_dir``, run every cell under ``work``, judge them."""
    t0 = time.perf_counter()
    corpus_dir, work = Path(corpus_dir), Path(work)
    variants = build_corpus(corpus_dir)
    work.mkdir(parents=True, exist_ok=True)
    base_ds = make_base_dataset(corpus_dir, work)
    cells = plan(variants, corpus_dir, work)
    originals = [c for c in cells if c.variant.name == "original"]
    others = [c for c in cells if c.variant.name != "original"]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for batch in (originals, others):       # the originals' answers first: the others compare with them
            for cell in pool.map(lambda c: run_cell(c, base_ds), batch):
                if progress:
                    progress(f"  {cell.key:40s} exit {cell.rc} in {cell.seconds:4.1f} s")
    base = {(c.variant.group, c.command): c for c in originals}
    for cell in cells:
        judge(cell, base.get((cell.variant.group, cell.command)))
    return Report(cells, time.perf_counter() - t0, jobs)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="folder for the corpus and the runs (default: a temporary folder, removed)")
    parser.add_argument("--markdown", help="also write the table and the messages as Markdown to this file")
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel (default 2)")
    parser.add_argument("--rebuild", action="store_true", help="derive the corpus again even if it is there")
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="spineseg-robustness-"))
    try:
        if args.rebuild:
            build_corpus(out / "corpus", force=True)
        report = run_suite(out / "corpus", out / "runs", jobs=args.jobs)
        print(report.text())
        if args.markdown:
            Path(args.markdown).write_text(report.markdown())
    finally:
        if not args.out:
            shutil.rmtree(out, ignore_errors=True)
    return 1 if report.failures() else 0


if __name__ == "__main__":
    sys.exit(main())
