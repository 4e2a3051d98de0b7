#!/usr/bin/env python3
"""Print what the Slicer harness and the API check find, for CI logs and closing notes: per module, the parameters
written and read back and how far the widget setup got (Testing/slicer_harness.py, each module in its own process),
optionally the self-tests as a build machine without PyTorch runs them, and the MRML calls checked against the oldest
supported Slicer and the current stable (Testing/test_slicer_api.py).

Console use::

    python scripts/slicer_harness_report.py                 # modules + API check
    python scripts/slicer_harness_report.py --self-tests    # also run each module's self-test without torch (slow)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Testing"))

import slicer_harness  # noqa: E402


def harness(*args) -> dict:
    proc = subprocess.run([sys.executable, str(Path(slicer_harness.__file__)), *args, "--json"], capture_output=True,
                          text=True, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = [line for line in proc.stdout.splitlines() if line.startswith("HARNESS-REPORT ")]
    if not lines:
        return {"module": args[1], "reached": [], "error": {"stage": "start", "type": "no report",
                                                           "message": proc.stderr[-500:]}}
    return json.loads(lines[-1].split(" ", 1)[1])


def api_summary() -> list[str]:
    import test_slicer_api as api

    sources = api.project_sources()
    calls = [c for text in sources.values() for c in api.calls_in(text)]
    out = []
    for version in (api.OLDEST, api.CURRENT):
        failures = api.check_sources(version, sources)
        out.append(f"API check against Slicer {version}: {len(calls)} calls ({len({(r, m) for r, m, _ in calls})} "
                   f"distinct) in {len(sources)} files, {len(failures)} missing"
                   + "".join(f"\n  {f}" for f in failures))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--self-tests", action="store_true", help="also run the self-tests without torch")
    args = parser.parse_args()
    if not slicer_harness.available():
        print(f"Slicer's Python layer not found at {slicer_harness.SLICER_PYTHON}")
        return 1
    ok = True
    for name in slicer_harness.module_folders():
        report = harness("check", name, "--hide", "torch")
        ok &= report["error"] is None
        print(slicer_harness.summary(report))
        if args.self_tests:
            test = harness("selftest", name, "--hide", "torch")
            ok &= test.get("outcome") in ("passed", "skipped")
            reason = f" ({test['error']['type']}: {test['error']['message'][:300]})" if test.get("error") else ""
            print(f"{name} self-test without torch: {test.get('outcome')}{reason}; "
                  f"delayDisplay: {test.get('messages')}")
    for line in api_summary():
        ok &= line.split("\n")[0].endswith(" 0 missing")
        print(line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
