"""``--events`` on the commands the Slicer panels start as child processes (``spineseg speed``, ``spineseg dataset
predict``, ``spineseg dataset finetune``): stdout holds only JSON-lines events of ``SpineSegLib.core.events`` (every
line parses), the result is a ``report`` event, a failure an ``error`` event with the CLI's one-line message (which
still goes to stderr), and human output goes to stderr."""

from __future__ import annotations

import pytest
from conftest import data_path

from SpineSegLib.cli import main
from SpineSegLib.core.events import ErrorEvent, ProgressEvent, ReportEvent, parse_event
from SpineSegLib.core.resources import resource_dir

MYO = "mr/vertebral-bodies-myosegmentum"
MR_MODEL = resource_dir("models") / "mr-vertebral-bodies.pt"


def run_events(capsys, *argv):
    """Exit status, the events on stdout (every line must be one) and the stderr lines."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert out == "" or out.endswith("\n")
    return code, [parse_event(line) for line in out.splitlines(keepends=True)], err.splitlines()


@pytest.fixture()
def corrected_dataset(tmp_path):
    """A linked two-case MR dataset whose labels are corrections (nothing for predict to do)."""
    from SpineSegLib.annotation.creation import create_dataset

    cases = ("01", "02")
    return create_dataset(tmp_path / "ds", [str(data_path(MYO, f"{c}_img.nii.gz")) for c in cases],
                          [str(data_path(MYO, f"{c}_vb.nii.gz")) for c in cases], label_convention="top-down:L1",
                          label_status="corrected", modality="mr", mode="link", split="1,0,0").root


def test_speed_events_end_in_a_probe_report(capsys):
    code, events, _ = run_events(capsys, "speed", "--events")
    assert code == 0 and len(events) == 1 and isinstance(events[0], ReportEvent) and events[0].name == "probe"
    info = events[0].data
    assert info["cpu_cores"] >= 1 and info["per_pass_seconds"] == {} and isinstance(info["cuda"], bool)


def test_speed_events_report_a_missing_model_as_one_error_event(capsys):
    code, events, err = run_events(capsys, "speed", "--events", "--model", "no-such-model")
    assert code == 2 and len(events) == 1 and isinstance(events[0], ErrorEvent)
    assert "no-such-model" in events[0].message and err == [f"spineseg: error: {events[0].message}"]


def test_dataset_predict_events_report_what_was_skipped(capsys, corrected_dataset):
    code, events, err = run_events(capsys, "dataset", "predict", corrected_dataset, "--model", MR_MODEL,
                                   "--device", "cpu", "--threads", "1", "--events")
    assert code == 0 and isinstance(events[-1], ReportEvent) and events[-1].name == "predict"
    assert all(isinstance(e, ProgressEvent) for e in events[:-1])
    report = events[-1].data
    assert report["predicted"] == [] and report["failed"] == [] and [c for c, _ in report["skipped"]] == ["01", "02"]
    assert any(line.startswith("predicted 0 case(s)") for line in err)        # the human summary, on stderr


def test_dataset_predict_events_report_a_missing_dataset(capsys, tmp_path):
    code, events, err = run_events(capsys, "dataset", "predict", tmp_path / "nothing", "--model", MR_MODEL,
                                   "--events")
    assert code == 2 and [type(e) for e in events] == [ErrorEvent] and err == [f"spineseg: error: {events[0].message}"]


def test_dataset_finetune_events_report_a_refusal(capsys, corrected_dataset, tmp_path):
    (tmp_path / "exists.pt").write_bytes(b"x")
    code, events, err = run_events(capsys, "dataset", "finetune", corrected_dataset, "--model", MR_MODEL,
                                   "-o", tmp_path / "exists.pt", "--events")
    assert code == 2 and [type(e) for e in events] == [ErrorEvent] and "exists" in events[0].message
    assert err[-1] == f"spineseg: error: {events[0].message}"
    assert (tmp_path / "exists.pt").read_bytes() == b"x"
