"""metrics.jsonl records: every kind carries its kind and the schema version; files written before
records had them still read with the right kinds."""

import json

from gankit import records


def test_each_writer_marks_kind_and_version():
    made = [
        records.train_record(4, 1, {"d_loss": 0.5}),
        records.eval_record(4, 1, {"fid": 12.0}, 3.5),
        records.warning_record(4, 1, "divergence", "lowered the rates", rollback=1),
        records.note_record(4, 1, "mode-collapse-recovered", "all modes again", coverage=1.0),
    ]
    assert [r["kind"] for r in made] == ["train", "eval", "warning", "note"]
    assert all(r["version"] == records.VERSION and (r["step"], r["epoch"]) == (4, 1) for r in made)
    assert [records.kind_of(r) for r in made] == ["train", "eval", "warning", "note"]
    assert records.fields(made[2]) == {"warning": "divergence", "message": "lowered the rates", "rollback": 1}


def test_version_less_lines_of_earlier_files_keep_their_kinds(tmp_path):
    old = [
        {"step": 2, "epoch": 1, "d_loss": 0.7, "g_loss": 0.8},
        {"step": 2, "epoch": 1, "eval": {"fid": 30.0}, "seconds": 1.0},
        {"step": 2, "epoch": 1, "warning": "mode-collapse", "message": "2/8 modes"},
        {"step": 3, "epoch": 2, "warning": "mode-collapse-recovered", "message": "8/8 modes"},
    ]
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in old))
    with path.open("a") as handle:
        handle.write(records.to_line(records.train_record(4, 2, {"d_loss": 0.6})))
    read = records.read_records(path)
    assert [records.kind_of(r) for r in read] == ["train", "eval", "warning", "note", "train"]
    assert [r["step"] for r in records.of_kind(read, "train")] == [2, 4]
