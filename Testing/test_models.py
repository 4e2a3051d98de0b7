"""The bundled models of SpineSegLib/resources/models: each has a card with the weights' SHA-256 that
loading checks, is found by name from any folder, and segments a real case it never saw in training
above a floor a little under what its card reports (slow: the real networks on full scans)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, data_path
from SpineSegLib.core.errors import InputError
from SpineSegLib.core.files import sha256_of
from SpineSegLib.core.image import read_image
from SpineSegLib.core.labels import by_name
from SpineSegLib.core.resources import resource_dir
from SpineSegLib.evaluation.instance_metrics import evaluate_instance_images
from SpineSegLib.iis.infer.run import segment_vertebrae
from SpineSegLib.iis.model.cards import card_of, card_sha256, read_card
from SpineSegLib.iis.model.catalog import describe_model, list_models, resolve_model
from SpineSegLib.iis.model.checkpoint import load_model

MODELS = REPO / "SpineSeg" / "SpineSegLib" / "resources" / "models"
MR_MODEL = MODELS / "mr-vertebral-bodies.pt"
MYO = ("mr", "vertebral-bodies-myosegmentum")


def bundled():
    return sorted(MODELS.glob("*.pt"))


def test_every_bundled_model_has_a_card_a_model_card_and_a_recipe():
    assert MR_MODEL in bundled()
    for weights in bundled():
        card = json.loads(weights.with_suffix(".json").read_text(encoding="utf-8"))
        assert weights.with_suffix(".md").is_file(), f"{weights.name}: no human-readable model card"
        assert card["sha256"] == sha256_of(weights) == card_sha256(weights)
        assert card_of(weights) == weights.with_suffix(".json")                 # the JSON card comes first
        assert read_card(weights.with_suffix(".md"))["name"] == card["name"] == weights.stem
        assert card["size_bytes"] == weights.stat().st_size
        assert (REPO / card["recipe"]).is_file()
        net, config, meta = load_model(weights)
        assert config.to_dict() == card["config"] == describe_model(weights, read_weights=False).config.to_dict()
        # the split of the card is the one the weights were trained with; no held-out case in training
        # weights saved before the split vocabulary was unified call the test cases held_out_cases
        assert card["test_cases"] == meta.get("test_cases", meta.get("held_out_cases"))
        assert not set(card["test_cases"]) & set(meta["train_cases"])
    listed = list_models()
    assert [m.name for m in listed] == ["mr-vertebral-bodies", "ct-vertebrae-experimental"]   # experimental last
    assert listed[1].label() == "ct-vertebrae-experimental [CT, experimental]" and not listed[0].experimental
    assert resolve_model("mr-vertebral-bodies") == MR_MODEL


def test_bundled_models_are_found_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resource_dir("models").resolve() == MODELS.resolve()
    assert resolve_model("mr-vertebral-bodies").resolve() == MR_MODEL.resolve()
    assert resolve_model("mr-vertebral-bodies.pt").resolve() == MR_MODEL.resolve()
    # a file in the current folder is taken as given, before a bundled model of that name
    (tmp_path / "mr-vertebral-bodies.pt").write_bytes(b"not weights")
    assert resolve_model("mr-vertebral-bodies.pt") == Path("mr-vertebral-bodies.pt")
    assert resolve_model(str(MR_MODEL)) == MR_MODEL


def test_a_changed_weights_file_is_refused(tmp_path):
    copy = tmp_path / MR_MODEL.name
    shutil.copyfile(MR_MODEL, copy)
    shutil.copyfile(MR_MODEL.with_suffix(".json"), copy.with_suffix(".json"))
    load_model(copy)                                   # the intact copy loads
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(InputError, match="SHA-256 .* does not match"):
        load_model(copy)
    with pytest.raises(InputError, match="neither a file nor a bundled model; bundled: .*mr-vertebral-bodies"):
        resolve_model("no-such-model")


@pytest.mark.slow
def test_mr_model_finds_the_lumbar_bodies_of_a_test_case():
    card = json.loads(MR_MODEL.with_suffix(".json").read_text(encoding="utf-8"))
    assert "myosegmentum/44" in card["test_cases"]
    image = read_image(data_path(*MYO, "44_img.nii.gz"))
    ref = read_image(data_path(*MYO, "44_vb.nii.gz"))
    ref = ref.with_array(np.where(ref.array > 0, ref.array + by_name("L1").label - 1, 0).astype(np.uint8))  # 1-5 = L1-L5
    result = segment_vertebrae(image, str(MR_MODEL), device="cpu", threads=2)
    res = evaluate_instance_images(result.labels, ref, pred_ids=None)
    dice = {v.name: v.dice for v in res.vertebrae}
    assert res.n_detected == 5, dice
    assert min(dice.values()) > FLOOR_MIN_DICE and np.mean(list(dice.values())) > FLOOR_MEAN_DICE, dice
    # traversal order is bottom-up: L5 first, then one vertebra after the other
    order = [r.name for r in sorted(result.instances, key=lambda r: r.traversal_index) if r.in_output]
    assert order[:5] == ["L5", "L4", "L3", "L2", "L1"], order


FLOOR_MIN_DICE = 0.85      # measured on myosegmentum/44: 0.889 (L2) ... 0.912
FLOOR_MEAN_DICE = 0.87     # measured: 0.900


@pytest.mark.slow
def test_experimental_ct_model_follows_the_spine_of_lidc():
    """Measured on LIDC-IDRI-0001 (never trained on): spine Dice 0.62, 17 of 18 vertebrae overlapped."""
    weights = MODELS / "ct-vertebrae-experimental.pt"
    card = json.loads(weights.with_suffix(".json").read_text(encoding="utf-8"))
    assert card["experimental"] and card["test_cases"] == ["ct/lidc-idri-0001"]
    assert "ct/lidc-idri-0001" not in card["train_cases"] + card["validation_cases"]
    folder = data_path("ct", "lidc-idri-0001")
    result = segment_vertebrae(read_image(folder / "image.nii.gz"), str(weights), device="cpu", threads=2)
    res = evaluate_instance_images(result.labels, read_image(folder / "vertebrae.nii.gz"), pred_ids=None)
    assert res.spine_dice > 0.55 and res.overlap_rate > 0.85, (res.spine_dice, res.overlap_rate)


@pytest.mark.slow
def test_cli_takes_a_bundled_model_by_name(tmp_path, capsys):
    from SpineSegLib.cli import main

    image = data_path(*MYO, "45_img.nii.gz")
    out, table = tmp_path / "v.nii.gz", tmp_path / "v.tsv"
    assert main(["iis", str(image), "-o", str(out), "--model", "mr-vertebral-bodies", "--table", str(table),
                 "--threads", "2", "--quiet"]) == 0
    names = [line.split("\t")[1] for line in table.read_text(encoding="utf-8").splitlines()[1:]]
    assert names[-5:] == ["L1", "L2", "L3", "L4", "L5"], names
    assert sorted(np.unique(read_image(out).array))[-5:] == [20, 21, 22, 23, 24]
    code = main(["iis", str(image), "-o", str(tmp_path / "w.nii.gz"), "--model", "mr-bodies"])
    err = capsys.readouterr().err
    assert code == 2 and "neither a file nor a bundled model" in err and err.strip().count("\n") == 0
    assert not (tmp_path / "w.nii.gz").exists()


def test_an_experimental_model_says_so_when_it_is_loaded():
    """The card marks the CT model experimental: loading it issues a note (printed by the CLI), the MR model none."""
    from SpineSegLib.core.notes import collect_notes
    from SpineSegLib.iis.infer.run import _load

    with collect_notes() as notes:
        _load(MODELS / "ct-vertebrae-experimental.pt", None)
    assert len(notes) == 1 and "experimental model" in notes[0] and "not reliable" in notes[0]
    with collect_notes() as notes:
        _load(MODELS / "mr-vertebral-bodies.pt", None)
    assert notes == []
