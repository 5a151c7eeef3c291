"""Tests of the readers (alc_hf.data.formats, alc_hf.data.xmc, alc_hf.data.tables) on small files written in each
exact format, and on the real shared data."""

from __future__ import annotations

import csv
import gzip
import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest

from alc_hf.data.formats import DataFormatError, csv_records, normalise_text
from alc_hf.data.tables import read_product_tables
from alc_hf.data.views import table_split, wdc_catalog_split
from alc_hf.data.xmc import read_filter_pairs, read_xmc
from tests.conftest import SHARED_DATA

LF_DIR = SHARED_DATA / "lf_amazontitles_131k_partial"
WDC_DIR = SHARED_DATA / "wdc_block_small"


def rows_of(ragged) -> list[list[int]]:
    return [ragged[i].tolist() for i in range(len(ragged))]


def write_jsonl(path: Path, rows: list[dict | str]) -> None:
    """Each row is a dict (dumped as JSON) or a raw string (written as is); gzip when the name ends in .gz."""
    data = "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows).encode()
    if path.name.endswith(".gz"):
        with gzip.open(path, "wb") as handle:
            handle.write(data)
    else:
        path.write_bytes(data)


LABELS = [
    {"uid": "L0", "title": "Red shoe", "content": "", "target_ind": []},
    {"uid": "L1", "title": "Blue hat", "content": "A warm hat"},
    {"uid": "L2", "title": "Green sock", "content": "", "target_ind": []},
]
QUERIES = [
    {"uid": "Q0", "title": "Shoe", "content": "Nice shoe", "target_ind": [0, 2], "target_rel": [1.0, 1.0]},
    {"uid": "Q1", "title": "Hat", "content": "", "target_ind": [1]},
    {"uid": "Q2", "title": "Nothing", "content": "", "target_ind": []},
]


def make_json_dir(tmp_path: Path, queries=QUERIES, labels=LABELS, split: str = "trn", gz: bool = True) -> Path:
    ext = ".json.gz" if gz else ".json"
    write_jsonl(tmp_path / f"{split}{ext}", queries)
    write_jsonl(tmp_path / f"lbl{ext}", labels)
    return tmp_path


def make_raw_dir(tmp_path: Path, x: str, y: str, xy: str, split: str = "tst") -> Path:
    (tmp_path / f"{split}_X.txt").write_text(x, encoding="utf-8")
    (tmp_path / "Y.txt").write_text(y, encoding="utf-8")
    (tmp_path / f"{split}_X_Y.txt").write_text(xy, encoding="utf-8")
    return tmp_path


RAW_X = "query zero\nquery one\nquery two\n"
RAW_Y = "label a\nlabel b\nlabel c\nlabel d\n"
RAW_XY = "3 4\n0:1.0 3:1\n\n2:0.5\n"


# ---------------------------------------------------------------------------------------------------- read_xmc


def test_read_xmc_json_lines_title_and_content(tmp_path: Path) -> None:
    make_json_dir(tmp_path)
    (tmp_path / "filter_labels_train.txt").write_text("0.0e+00 1.0e+00\n\n2.000000e+00 0.0e+00\n")
    data = read_xmc(tmp_path, "trn")
    assert data.queries == ["Shoe", "Hat", "Nothing"]
    assert data.labels == ["Red shoe", "Blue hat", "Green sock"]
    assert rows_of(data.positives) == [[0, 2], [1], []]
    assert data.filter_pairs.tolist() == [[0, 1], [2, 0]]
    assert data.negatives is None and data.skipped == []
    assert str(tmp_path) in data.source and "trn" in data.source

    both = read_xmc(tmp_path, "trn", text="title+content")
    assert both.queries == ["Shoe. Nice shoe", "Hat", "Nothing"]
    assert both.labels == ["Red shoe", "Blue hat. A warm hat", "Green sock"]


def test_read_xmc_uncompressed_json_and_no_filter_file(tmp_path: Path) -> None:
    make_json_dir(tmp_path, split="tst", gz=False)
    (tmp_path / "filter_labels_train.txt").write_text("9 9\n")  # belongs to trn: not used for tst
    data = read_xmc(tmp_path, "tst")
    assert data.queries == ["Shoe", "Hat", "Nothing"]
    assert rows_of(data.positives) == [[0, 2], [1], []]
    assert data.filter_pairs.shape == (0, 2)


def test_read_xmc_raw_text_form(tmp_path: Path) -> None:
    make_raw_dir(tmp_path, RAW_X, RAW_Y, RAW_XY)
    (tmp_path / "filter_labels_test.txt").write_text("1.000000000000000000e+00 2.000000000000000000e+00\n")
    for text in ("title", "title+content"):
        data = read_xmc(tmp_path, "tst", text=text)
        assert data.queries == ["query zero", "query one", "query two"]
        assert data.labels == ["label a", "label b", "label c", "label d"]
        assert rows_of(data.positives) == [[0, 3], [], [2]]
        assert data.filter_pairs.tolist() == [[1, 2]]


def test_read_xmc_prefers_json_lines_when_both_forms_exist(tmp_path: Path) -> None:
    make_raw_dir(tmp_path, RAW_X, RAW_Y, RAW_XY, split="trn")
    make_json_dir(tmp_path)
    assert read_xmc(tmp_path, "trn").queries == ["Shoe", "Hat", "Nothing"]


def test_read_xmc_missing_files_and_bad_options(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"trn\.json\.gz.*lbl\.json\.gz.*trn_X\.txt.*Y\.txt.*trn_X_Y\.txt"):
        read_xmc(tmp_path, "trn")
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path))):
        read_xmc(tmp_path, "trn")
    write_jsonl(tmp_path / "trn.json.gz", QUERIES)  # labels missing
    with pytest.raises(FileNotFoundError, match="lbl.json"):
        read_xmc(tmp_path, "trn")
    with pytest.raises(ValueError, match="'trn', 'tst'"):
        read_xmc(tmp_path, "test")
    with pytest.raises(ValueError, match="title\\+content"):
        read_xmc(tmp_path, "trn", text="content")


def test_read_xmc_malformed_json_line(tmp_path: Path) -> None:
    make_json_dir(tmp_path, queries=[QUERIES[0], '{"uid": "Q1", "title": "Hat"', QUERIES[2]])
    with pytest.raises(DataFormatError, match=r"trn\.json\.gz:2: malformed JSON"):
        read_xmc(tmp_path, "trn")
    make_json_dir(tmp_path, labels=[LABELS[0], "[1, 2]", LABELS[2]])
    with pytest.raises(DataFormatError, match=r"lbl\.json\.gz:2: expected a JSON object"):
        read_xmc(tmp_path, "trn")


@pytest.mark.parametrize("bad_index", [3, -1])
def test_read_xmc_label_index_out_of_range(tmp_path: Path, bad_index: int) -> None:
    queries = [QUERIES[0], QUERIES[1], {"uid": "Q2", "title": "x", "target_ind": [0, bad_index]}]
    make_json_dir(tmp_path, queries=queries)
    with pytest.raises(DataFormatError, match=rf"trn\.json\.gz:3: label index {bad_index} .*out of range \[0, 3\)"):
        read_xmc(tmp_path, "trn")


def test_read_xmc_empty_text_and_bad_target_type(tmp_path: Path) -> None:
    make_json_dir(tmp_path, queries=[QUERIES[0], {"uid": "Q1", "title": " ", "content": "c", "target_ind": []}])
    with pytest.raises(DataFormatError, match=r"trn\.json\.gz:2: empty text"):
        read_xmc(tmp_path, "trn")
    assert read_xmc(tmp_path, "trn", text="title+content").queries == ["Shoe. Nice shoe", "c"]
    make_json_dir(tmp_path, queries=[{"uid": "Q0", "title": "a", "target_ind": [1.5]}])
    with pytest.raises(DataFormatError, match=r"trn\.json\.gz:1: expected 'target_ind' to be a list of integer"):
        read_xmc(tmp_path, "trn")
    make_json_dir(tmp_path, labels=[LABELS[0], {"uid": "L1", "title": ""}])
    with pytest.raises(DataFormatError, match=r"lbl\.json\.gz:2: empty text"):
        read_xmc(tmp_path, "trn", skip_bad_rows=True)  # a label row is never skipped


def test_read_xmc_filter_pairs_out_of_range(tmp_path: Path) -> None:
    make_json_dir(tmp_path)
    (tmp_path / "filter_labels_train.txt").write_text("0 1\n\n1 2\n2 3\n")
    with pytest.raises(DataFormatError, match=r"filter_labels_train\.txt:4: label index 3 out of range"):
        read_xmc(tmp_path, "trn")
    (tmp_path / "filter_labels_train.txt").write_text("0 1\n3 0\n")
    with pytest.raises(DataFormatError, match=r"filter_labels_train\.txt:2: query index 3 out of range"):
        read_xmc(tmp_path, "trn")


@pytest.mark.parametrize(
    ("xy", "message"),
    [
        ("4 4\n0:1\n\n2:1\n", r"tst_X_Y\.txt:1: header says 4 rows but the file has 3 row lines"),
        ("3 4\n0:1\n\n", r"tst_X_Y\.txt:1: header says 3 rows but the file has 2 row lines"),
        ("3 5\n0:1\n\n2:1\n", r"tst_X_Y\.txt:1: header says 5 labels but the label file has 4"),
        ("3 4\n0:1\n\n4:1\n", r"tst_X_Y\.txt:4: label index 4 >= num_cols 4"),
        ("3 4\n0:1\n1;1\n2:1\n", r"tst_X_Y\.txt:3: malformed token '1;1'"),
        ("3 4\n0:1 1:x\n\n2:1\n", r"tst_X_Y\.txt:2: malformed token '1:x'"),
        ("three 4\n0:1\n\n2:1\n", r"tst_X_Y\.txt:1: expected a header"),
    ],
)
def test_read_xmc_sparse_matrix_errors(tmp_path: Path, xy: str, message: str) -> None:
    make_raw_dir(tmp_path, RAW_X, RAW_Y, xy)
    with pytest.raises(DataFormatError, match=message):
        read_xmc(tmp_path, "tst")


def test_read_xmc_raw_text_empty_query_line(tmp_path: Path) -> None:
    make_raw_dir(tmp_path, "query zero\n\nquery two\n", RAW_Y, RAW_XY)
    with pytest.raises(DataFormatError, match=r"tst_X\.txt:2: empty text"):
        read_xmc(tmp_path, "tst")


def test_read_xmc_skip_bad_rows_json(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    queries = [
        QUERIES[0],
        "not json",
        {"uid": "Q2", "title": "Hat", "target_ind": [1, 7]},
        {"uid": "Q3", "title": "Sock", "target_ind": [2]},
    ]
    make_json_dir(tmp_path, queries=queries)
    (tmp_path / "filter_labels_train.txt").write_text("0 1\n1 0\n2 0\n3 1\n")
    with caplog.at_level(logging.WARNING, logger="alc_hf.data.formats"):
        data = read_xmc(tmp_path, "trn", skip_bad_rows=True)
    assert data.queries == ["Shoe", "Sock"]
    assert rows_of(data.positives) == [[0, 2], [2]]
    assert [place for place, _ in data.skipped] == ["trn.json.gz:2", "trn.json.gz:3"]
    assert data.skipped[0][1].startswith("malformed JSON")
    assert "label index 7" in data.skipped[1][1]
    assert data.filter_pairs.tolist() == [[0, 1], [1, 1]]  # pairs of dropped rows removed, the rest renumbered
    assert "skipped 2 bad row(s)" in caplog.text


def test_read_xmc_skip_bad_rows_raw_text(tmp_path: Path) -> None:
    make_raw_dir(tmp_path, "q0\n\nq2\nq3\n", RAW_Y, "4 4\n0:1\n1:1\n9:1 2:1\n3:1 x\n")
    data = read_xmc(tmp_path, "tst", skip_bad_rows=True)
    assert data.queries == ["q0"]
    assert rows_of(data.positives) == [[0]]
    assert [place for place, _ in data.skipped] == ["tst_X.txt:2", "tst_X_Y.txt:4", "tst_X_Y.txt:5"]
    # a wrong header is still an error
    make_raw_dir(tmp_path, "q0\nq1\n", RAW_Y, "3 4\n0:1\n1:1\n")
    with pytest.raises(DataFormatError, match=r"tst_X_Y\.txt:1: header says 3 rows"):
        read_xmc(tmp_path, "tst", skip_bad_rows=True)


def test_read_xmc_truncated_gzip_is_an_error(tmp_path: Path) -> None:
    make_json_dir(tmp_path)
    blob = (tmp_path / "trn.json.gz").read_bytes()
    (tmp_path / "trn.json.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataFormatError, match=r"trn\.json\.gz"):
        read_xmc(tmp_path, "trn", skip_bad_rows=True)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("tst_X.txt", b"query zero\nquery \xe9one\nquery two\n", r"tst_X\.txt:2: not valid UTF-8 at column 7"),
        ("Y.txt", b"label a\nlabel b\nlabel c\nlabel \xffd\n", r"Y\.txt:4: not valid UTF-8 at column 7"),
        ("filter_labels_test.txt", b"0 1\n\n1 \xe92\n", r"filter_labels_test\.txt:3: not valid UTF-8 at column 3"),
    ],
)
def test_read_xmc_raw_text_bad_byte_is_located(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    make_raw_dir(tmp_path, RAW_X, RAW_Y, RAW_XY)
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DataFormatError, match=message + r" \(byte 0x(e9|ff): invalid .*\); save the file as UTF-8"):
        read_xmc(tmp_path, "tst")


def test_read_xmc_raw_text_bom_is_not_read_into_the_first_text(tmp_path: Path) -> None:
    make_raw_dir(tmp_path, RAW_X, RAW_Y, RAW_XY)
    for name in ("tst_X.txt", "Y.txt"):
        (tmp_path / name).write_bytes(b"\xef\xbb\xbf" + (tmp_path / name).read_bytes())
    data = read_xmc(tmp_path, "tst")
    assert data.queries[0] == "query zero" and data.labels[0] == "label a"


def test_read_xmc_json_lines_bad_byte_is_located(tmp_path: Path) -> None:
    make_json_dir(tmp_path)
    with gzip.open(tmp_path / "trn.json.gz", "ab") as handle:
        handle.write(b'{"uid": "Q3", "title": "H\xe9t", "target_ind": [1]}\n')
    reason = r"not valid UTF-8 at column 26 \(byte 0xe9: invalid continuation byte\); save the file as UTF-8"
    with pytest.raises(DataFormatError, match=rf"trn\.json\.gz:4: {reason}"):
        read_xmc(tmp_path, "trn")
    data = read_xmc(tmp_path, "trn", skip_bad_rows=True)  # a bad query line is skipped, named alike
    assert data.queries == ["Shoe", "Hat", "Nothing"]
    assert len(data.skipped) == 1 and data.skipped[0][0] == "trn.json.gz:4"
    assert re.fullmatch(reason, data.skipped[0][1])


# ------------------------------------------------------------------------------------------- read_filter_pairs


def test_read_filter_pairs_small(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_text("1.000000000000000000e+00 5.000000000000000000e+00\n\n  3 0.0\r\n7\t2e1\n")
    pairs = read_filter_pairs(path)
    assert pairs.dtype == np.int64 and pairs.tolist() == [[1, 5], [3, 0], [7, 20]]
    path.write_text("")
    assert read_filter_pairs(path).shape == (0, 2)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("1 2\n\n3 4.5\n", r"f\.txt:3: '4\.5' is not a whole number"),
        ("1 2\n3 4 5\n6\n", r"f\.txt:2: expected 2 whitespace-separated numbers"),
        ("1 2\n3\n4 5 6\n", r"f\.txt:2: expected 2 .* got 1 field"),
        ("1 2\n-1.0e+00 4\n", r"f\.txt:2: '-1\.0e\+00' is negative"),
        ("1 2\n3 four\n", r"f\.txt:2: 'four' is not a number"),
        ("1 nan\n", r"f\.txt:1: 'nan' is not a whole number"),
    ],
)
def test_read_filter_pairs_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "f.txt"
    path.write_text(content)
    with pytest.raises(DataFormatError, match=message):
        read_filter_pairs(path)


def test_read_filter_pairs_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_filter_pairs(tmp_path / "nope.txt")


@pytest.mark.shared_data
def test_read_filter_pairs_real_files() -> None:
    test_pairs = read_filter_pairs(LF_DIR / "filter_labels_test.txt")
    assert test_pairs.shape == (73_329, 2) and test_pairs.dtype == np.int64
    assert test_pairs.min() >= 0
    assert test_pairs[:, 0].max() < 134_835 and test_pairs[:, 1].max() < 131_073
    train_pairs = read_filter_pairs(LF_DIR / "filter_labels_train.txt")
    assert train_pairs.shape == (75_144, 2)
    assert train_pairs.min() >= 0
    assert train_pairs[:, 0].max() < 294_805 and train_pairs[:, 1].max() < 131_073


# ----------------------------------------------------------------------------------------- read_product_tables

TABLE_HEADER = "id,brand,title,description,price,cluster_id,pricecurrency,page_url\n"
PAIR_HEADER = "ltable_id,rtable_id,label,cluster_id_left,cluster_id_right,pair_id\n"


def make_tables(tmp_path: Path, table_a: str, table_b: str, train: str, valid: str, test: str) -> Path:
    for name, body in (("tableA", table_a), ("tableB", table_b)):
        (tmp_path / f"{name}.csv").write_text(TABLE_HEADER + body, encoding="utf-8")
    for name, body in (("train", train), ("valid", valid), ("test", test)):
        (tmp_path / f"{name}.csv").write_text(PAIR_HEADER + body, encoding="utf-8")
    return tmp_path


TABLE_A = (
    'a0,Sony,Sony WH-1000XM3 Black,"multi\nline, description",1,7,,\n'
    "a1,,Jabra Evolve 75,,2,8,,\n"
    "a2,Acme,Widget,,3,9,,\n"
)
TABLE_B = (
    "b0,sony,WH1000XM3  black!,,1,99,,\n"  # same normalised text as a0, and its positive
    "b1,SONY,Sony  wh-1000xm3 BLACK,,1,7,,\n"  # same normalised text as a0, not labelled: filtered
    'b2,,Jabra Evolve 75 UC,"desc",2,8,,\n'
    "b3,,jabra   evolve-75,,2,8,,\n"  # same normalised text as a1 (no brand)
    "b4,Acme,Gadget,,3,9,,\n"
)
# cluster ids deliberately contradict the labels: they must not be used
TRAIN = "a0,b1,0,7,7,x\na2,b4,1,1,2,x\n"
VALID = "a1,b3,1,5,6,x\n"
TEST = "a1,b2,0,8,8,x\na0,b0,1,1,2,x\na0,b2,0,7,8,x\na1,b4,0,8,8,x\n"


def test_read_product_tables_small(tmp_path: Path) -> None:
    make_tables(tmp_path, TABLE_A, TABLE_B, TRAIN, VALID, TEST)
    data = table_split(tmp_path, "test")
    assert data.queries == ["Jabra Evolve 75", "Sony Sony WH-1000XM3 Black"]  # first-appearance order: a1, a0
    assert data.labels == [
        "sony WH1000XM3  black!",
        "SONY Sony  wh-1000xm3 BLACK",
        "Jabra Evolve 75 UC",
        "jabra   evolve-75",
        "Acme Gadget",
    ]
    assert rows_of(data.positives) == [[], [0]]
    assert rows_of(data.negatives) == [[2, 4], [2]]
    # query 1 (a0): b0 is its positive (never filtered), b1 has the same normalised text; query 0 (a1): b3
    assert sorted(map(tuple, data.filter_pairs.tolist())) == [(0, 3), (1, 1)]
    assert "test" in data.source

    all_gt = table_split(tmp_path, "test", ground_truth="all_splits")
    assert rows_of(all_gt.positives) == [[3], [0]]  # a1's positive b3 comes from valid
    assert sorted(map(tuple, all_gt.filter_pairs.tolist())) == [(1, 1)]  # b3 is now a positive of a1
    assert rows_of(all_gt.negatives) == rows_of(data.negatives)

    title_only = table_split(tmp_path, "train", text_fields=("title",))
    assert title_only.queries == ["Sony WH-1000XM3 Black", "Widget"]
    assert title_only.labels[4] == "Gadget"
    assert rows_of(title_only.positives) == [[], [4]]
    assert rows_of(title_only.negatives) == [[1], []]
    assert title_only.filter_pairs.tolist() == [[0, 1]]  # b1 is a labelled negative of a0 with an identical text


def test_normalise_text() -> None:
    assert normalise_text("Sony Sony WH-1000XM3, Black") == normalise_text("sony wh1000xm3 black!!")
    assert normalise_text("a b a b") == "abab"  # only a word equal to the one just before is dropped
    assert normalise_text("Café  café") == "café"
    assert normalise_text("--") == ""


def test_read_product_tables_options_and_missing(tmp_path: Path) -> None:
    make_tables(tmp_path, TABLE_A, TABLE_B, TRAIN, VALID, TEST)
    with pytest.raises(ValueError, match="'train', 'valid', 'test'"):
        read_product_tables(tmp_path, "tst")
    with pytest.raises(ValueError, match="all_splits"):
        table_split(tmp_path, "test", ground_truth="clusters")
    (tmp_path / "valid.csv").unlink()
    assert read_product_tables(tmp_path, "test").num_queries == 2  # valid.csv is not needed for the split view
    with pytest.raises(FileNotFoundError, match=r"valid\.csv"):
        table_split(tmp_path, "test", ground_truth="all_splits")


def test_read_product_tables_missing_columns(tmp_path: Path) -> None:
    make_tables(tmp_path, TABLE_A, TABLE_B, TRAIN, VALID, TEST)
    (tmp_path / "test.csv").write_text("ltable_id,right,lbl\na0,b0,1\n")
    with pytest.raises(DataFormatError, match=r"test\.csv:1: missing column\(s\) rtable_id, label"):
        read_product_tables(tmp_path, "test")
    with pytest.raises(DataFormatError, match=r"tableA\.csv:1: missing column\(s\) name"):
        read_product_tables(tmp_path, "test", text_fields=("brand", "name"))


@pytest.mark.parametrize(
    ("test_csv", "message"),
    [
        ("a0,b0,1,1,1,x\na9,b0,0,1,1,x\n", r"test\.csv:3: row 2: ltable_id 'a9' not found in tableA\.csv"),
        ("a0,b0,1,1,1,x\na1,b0,0,1,1,x\na1,b9,0,1,1,x\n", r"test\.csv:4: row 3: rtable_id 'b9' not found"),
        ("a0,b0,yes,1,1,x\n", r"test\.csv:2: row 1: label 'yes', expected 0 or 1"),
    ],
)
def test_read_product_tables_bad_pairs(tmp_path: Path, test_csv: str, message: str) -> None:
    make_tables(tmp_path, TABLE_A, TABLE_B, TRAIN, VALID, test_csv)
    with pytest.raises(DataFormatError, match=message):
        read_product_tables(tmp_path, "test")


def test_read_product_tables_refuses_a_pair_labelled_both_ways_and_counts_a_repeat_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    contradiction = "a1,b2,1,1,1,x\na0,b0,1,1,1,x\na1,b2,0,1,1,x\n"
    make_tables(tmp_path, TABLE_A, TABLE_B, TRAIN, VALID, contradiction)
    pairs = re.escape(str(tmp_path / "test.csv"))
    message = rf"{pairs}:4: query 'a1' and label 'b2' marked label 0, but {pairs}:2 marks them label 1: one pair cannot"
    for skip_bad_rows in (False, True):  # a contradiction is never a bad row to skip: nothing says which is right
        with pytest.raises(DataFormatError, match=message):
            read_product_tables(tmp_path, "test", skip_bad_rows=skip_bad_rows)

    repeated = "a1,b2,1,1,1,x\na0,b0,1,1,1,x\na1,b2,1,1,1,x\na1,b2,1,1,1,x\n"
    make_tables(tmp_path, TABLE_A, TABLE_B, TRAIN, VALID, repeated)
    with caplog.at_level(logging.WARNING, logger="alc_hf.data.labelled_pairs"):
        data = read_product_tables(tmp_path, "test")
    assert rows_of(data.positives) == [[2], [0]] and rows_of(data.negatives) == [[], []]
    assert "2 row(s) repeat an earlier (query, label) pair with the same mark and count once; the first is " in (
        caplog.text
    )
    assert f"{tmp_path / 'test.csv'}:4, a repeat of {tmp_path / 'test.csv'}:2" in caplog.text


def test_a_csv_value_longer_than_the_csv_modules_default_limit_is_read(tmp_path: Path) -> None:
    description = "x" * 200_000  # csv refuses fields over 131,072 characters unless told otherwise
    (tmp_path / "long.csv").write_text(f'id,description\n1,"{description}"\n2,short\n', encoding="utf-8")
    assert [values for _, _, values in csv_records(tmp_path / "long.csv", ("id", "description"))] == [
        ["1", description],
        ["2", "short"],
    ]


def test_read_product_tables_header_only_split_names_the_file(tmp_path: Path) -> None:
    make_tables(tmp_path, TABLE_A, TABLE_B, TRAIN, VALID, "")
    with pytest.raises(
        DataFormatError, match=re.escape(f"{tmp_path / 'test.csv'}: no rows after the header (split 'test'")
    ):
        read_product_tables(tmp_path, "test")


def test_read_product_tables_empty_text(tmp_path: Path) -> None:
    table_a = TABLE_A + 'a3,,"  ","long\ndescription",4,1,,\n'
    test_csv = "a0,b0,1,1,1,x\na3,b4,0,1,1,x\na1,b2,1,1,1,x\n"
    make_tables(tmp_path, table_a, TABLE_B, TRAIN, VALID, test_csv)
    # tableA line 6 is the record of a3 (the record of a0 spans lines 2-3); the pair is test.csv line 3
    with pytest.raises(DataFormatError, match=r"test\.csv:3: row 2: ltable_id 'a3': tableA\.csv:6 \(row 4\): empty"):
        read_product_tables(tmp_path, "test")
    make_tables(tmp_path, TABLE_A, TABLE_B + "b5,,,,5,1,,\n", TRAIN, VALID, TEST)
    with pytest.raises(DataFormatError, match=r"tableB\.csv:7 \(row 6\): empty text in brand\+title"):
        read_product_tables(tmp_path, "test", skip_bad_rows=True)


def test_read_product_tables_skip_bad_rows(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    table_a = TABLE_A + "a3,,,,4,1,,\n"
    test_csv = "a0,b0,1,1,1,x\na3,b4,0,1,1,x\na1,b2,1,1,1,x\na2,b4,1,1,1,x\na2,b9,0,1,1,x\na9,b0,1,1,1,x\n"
    make_tables(tmp_path, table_a, TABLE_B, TRAIN, VALID, test_csv)
    with caplog.at_level(logging.WARNING, logger="alc_hf.data.formats"):
        data = table_split(tmp_path, "test", skip_bad_rows=True)
    assert data.queries == ["Sony Sony WH-1000XM3 Black", "Jabra Evolve 75"]
    assert rows_of(data.positives) == [[0], [2]]
    assert [place for place, _ in data.skipped] == ["test.csv:3", "test.csv:6", "test.csv:7"]
    assert "empty text" in data.skipped[0][1]
    assert "rtable_id 'b9'" in data.skipped[1][1] and "ltable_id 'a9'" in data.skipped[2][1]
    assert data.filter_pairs.tolist() == [[0, 1], [1, 3]]
    assert "skipped 3 bad row(s)" in caplog.text


def test_read_product_tables_excel_csv_with_bom_and_crlf(tmp_path: Path) -> None:
    make_tables(tmp_path, TABLE_A, TABLE_B, TRAIN, VALID, TEST)
    expected = table_split(tmp_path, "test")
    for name in ("tableA.csv", "test.csv"):  # as Excel saves "CSV UTF-8": a BOM, and \r\n line ends
        text = (tmp_path / name).read_text(encoding="utf-8")
        (tmp_path / name).write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    data = table_split(tmp_path, "test")
    assert (data.queries, data.labels) == (expected.queries, expected.labels)
    assert rows_of(data.positives) == rows_of(expected.positives)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (  # the misread: an unquoted comma in the title shifts every later value by one column
            "tableA.csv",
            TABLE_HEADER + TABLE_A + "a3,Sony,WH-1000XM5, black,,4,1,,\n",
            r"tableA\.csv:6: row 4 has 9 fields, expected 8 as in the header \(an unquoted comma inside a value\? "
            r"quote the value\)",
        ),
        (
            "tableB.csv",
            TABLE_HEADER + TABLE_B + "b5,Acme,Gadget\n",
            r"tableB\.csv:7: row 6 has 3 fields, expected 8 as in the header \(a value or a delimiter missing\?\)",
        ),
        ("test.csv", PAIR_HEADER + "a0,b0,1,1,1,x\na1,b2,0,1,1,x,\n", r"test\.csv:3: row 2 has 7 fields, expected 6"),
        (
            "tableA.csv",
            (TABLE_HEADER + TABLE_A).encode() + b"a3,Caf\xe9,x,,4,1,,\n",
            r"tableA\.csv:6: not valid UTF-8 at column 7 \(byte 0xe9: invalid continuation byte\); save the file as "
            r"UTF-8",
        ),
        (
            "tableB.csv",
            TABLE_HEADER.replace("description", "title") + TABLE_B,
            r"tableB\.csv:1: column 'title' appears twice in the header \(fields 3 and 4\)",
        ),
    ],
)
def test_read_product_tables_misread_rows_are_located(
    tmp_path: Path, name: str, content: str | bytes, message: str
) -> None:
    make_tables(tmp_path, TABLE_A, TABLE_B, TRAIN, VALID, TEST)
    (tmp_path / name).write_bytes(content.encode() if isinstance(content, str) else content)
    with pytest.raises(DataFormatError, match=message):
        read_product_tables(tmp_path, "test", skip_bad_rows=True)  # a misread row is never skipped


@pytest.mark.shared_data
def test_read_product_tables_real_wdc() -> None:
    test = table_split(WDC_DIR, "test")
    assert test.num_queries == 1000 and test.num_labels == 5000
    counts = test.positives.lengths()
    assert (counts == 1).sum() == 500 and (counts == 0).sum() == 500
    assert test.negatives is not None and test.negatives.ids.size == 4000
    assert test.skipped == []

    # positives and negatives exactly reproduce the label == 1 / label == 0 rows of test.csv
    with open(WDC_DIR / "tableB.csv", encoding="utf-8", newline="") as handle:
        b_pos = {row["id"]: i for i, row in enumerate(csv.DictReader(handle))}
    assert len(b_pos) == 5000
    with open(WDC_DIR / "test.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    query_of = {}
    for row in rows:
        query_of.setdefault(row["ltable_id"], len(query_of))
    expected_pos = {(query_of[r["ltable_id"]], b_pos[r["rtable_id"]]) for r in rows if r["label"] == "1"}
    expected_neg = {(query_of[r["ltable_id"]], b_pos[r["rtable_id"]]) for r in rows if r["label"] == "0"}
    got_pos = set(zip(test.positives.row_of_each_id().tolist(), test.positives.ids.tolist(), strict=True))
    got_neg = set(zip(test.negatives.row_of_each_id().tolist(), test.negatives.ids.tolist(), strict=True))
    assert got_pos == expected_pos and got_neg == expected_neg

    valid = table_split(WDC_DIR, "valid")
    assert valid.num_queries == 3535
    assert (valid.positives.lengths() > 0).sum() == 2001

    for data in (test, valid, table_split(WDC_DIR, "test", ground_truth="all_splits")):
        assert len(data.filter_pairs) > 0
        positives = set(zip(data.positives.row_of_each_id().tolist(), data.positives.ids.tolist(), strict=True))
        assert not positives & set(map(tuple, data.filter_pairs.tolist()))
        for q, b in data.filter_pairs[:50].tolist():
            assert normalise_text(data.queries[q]) == normalise_text(data.labels[b])


@pytest.mark.shared_data
def test_wdc_catalog_split_keeps_the_split_matched_queries_with_every_splits_positives() -> None:
    def label_one_pairs(split):
        with open(WDC_DIR / f"{split}.csv", encoding="utf-8", newline="") as handle:
            return {(r["ltable_id"], r["rtable_id"]) for r in csv.DictReader(handle) if r["label"] == "1"}

    with open(WDC_DIR / "tableA.csv", encoding="utf-8", newline="") as handle:
        a_text = {r["id"]: " ".join(v for v in (r["brand"], r["title"]) if v) for r in csv.DictReader(handle)}
    with open(WDC_DIR / "tableB.csv", encoding="utf-8", newline="") as handle:
        b_text = {r["id"]: " ".join(v for v in (r["brand"], r["title"]) if v) for r in csv.DictReader(handle)}
    every_split = set().union(*(label_one_pairs(split) for split in ("train", "valid", "test")))
    for split, expected_queries in (("test", 500), ("valid", 2001)):
        matched = {left for left, _ in label_one_pairs(split)}
        data = wdc_catalog_split(WDC_DIR, split)
        assert data.num_queries == expected_queries == len(matched)
        assert sorted(data.queries) == sorted(a_text[left] for left in matched)
        # ground truth: the positives over every split (compared as texts: ids are not kept)
        pairs = zip(data.positives.row_of_each_id().tolist(), data.positives.ids.tolist(), strict=True)
        got = {(data.queries[q], data.labels[b]) for q, b in pairs}
        expected = {(a_text[left], b_text[right]) for left, right in every_split if left in matched}
        assert got == expected
        if split == "test":  # one match each in test.csv; train / valid label more of them
            assert data.positives.ids.size > 500


# ----------------------------------------------------------------------------- strict CSV reading (csv_records)


def test_csv_records_quoted_values_and_every_line_end(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    # \r\n, a blank line, a lone \r (old Mac files), no final line end; quoted commas and newlines stay in values
    path.write_bytes(b'id,text\r\na,"one, two"\r\nb,"multi\r\nline, text"\r\n\r\nc,plain\rd,"old\rmac"\re,last')
    assert list(csv_records(path, ["text", "id"])) == [
        (1, 2, ["one, two", "a"]),
        (2, 3, ["multi\r\nline, text", "b"]),
        (3, 6, ["plain", "c"]),
        (4, 7, ["old\rmac", "d"]),
        (5, 9, ["last", "e"]),
    ]
    path.write_bytes(path.read_bytes() + b"\nf,x,y\n")
    with pytest.raises(DataFormatError, match=r"t\.csv:10: row 6 has 3 fields, expected 2 as in the header"):
        list(csv_records(path, ["id"]))


@pytest.mark.parametrize(("delimiter", "delimiter_name"), [(",", "comma"), ("\t", "tab")])
@pytest.mark.parametrize(
    ("row", "hint"),
    [
        (["x", "y", "z", "w"], r"an unquoted {} inside a value\? quote the value"),
        (["x", "y"], r"a value or a delimiter missing\?"),
    ],
)
def test_csv_records_row_must_have_the_headers_field_count(
    tmp_path: Path, delimiter: str, delimiter_name: str, row: list[str], hint: str
) -> None:
    path = tmp_path / "t.csv"
    records = [["id", "name", "note"], ["a", '"multi\nline"', "n"], [], row]  # lines 1, 2-3, 4 (blank), 5
    path.write_text("".join(delimiter.join(fields) + "\n" for fields in records), encoding="utf-8")
    message = rf"t\.csv:5: row 2 has {len(row)} fields, expected 3 as in the header \({hint.format(delimiter_name)}\)"
    with pytest.raises(DataFormatError, match=message):
        list(csv_records(path, ["id"], delimiter))


@pytest.mark.parametrize(
    ("content", "line", "column", "reason"),
    [
        (b"id,name\na,ok\nb,caf\xc3\xa9 \xe9x\n", 3, 8, "0xe9: invalid continuation byte"),  # columns count characters
        (b"id,n\xe4me\na,ok\n", 1, 5, "0xe4: invalid continuation byte"),  # the header
        (b'id,name\na,"two\nlines \xff"\nb,ok\n', 3, 7, "0xff: invalid start byte"),  # in a quoted value: its own line
    ],
)
def test_csv_records_bad_byte_names_its_line(
    tmp_path: Path, content: bytes, line: int, column: int, reason: str
) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(content)
    message = rf"t\.csv:{line}: not valid UTF-8 at column {column} \(byte {reason}\); save the file as UTF-8$"
    with pytest.raises(DataFormatError, match=message):
        list(csv_records(path, ["id", "name"]))


def test_csv_records_bom_header_and_duplicate_columns(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(b"\xef\xbb\xbfid,title\r\na,Caf\xc3\xa9\r\n")  # Excel's "CSV UTF-8"
    assert list(csv_records(path, ["id", "title"])) == [(1, 2, ["a", "Café"])]
    path.write_text("id,title,brand, title\na,x,y,z\n", encoding="utf-8")
    with pytest.raises(
        DataFormatError, match=r"t\.csv:1: column 'title' appears twice in the header \(fields 2 and 4\)"
    ):
        list(csv_records(path, ["id"]))


def test_csv_records_gzip(tmp_path: Path) -> None:
    path = tmp_path / "t.csv.gz"
    path.write_bytes(gzip.compress(b'id,name\na,"x,\ny"\n'))
    assert list(csv_records(path, ["name"])) == [(1, 2, ["x,\ny"])]
    path.write_bytes(gzip.compress(b'id,name\na,"x,\ny"\nb,z,extra\n'))
    with pytest.raises(DataFormatError, match=r"t\.csv\.gz:4: row 2 has 3 fields, expected 2 as in the header"):
        list(csv_records(path, ["name"]))


@pytest.mark.shared_data
@pytest.mark.parametrize("folder", ["wdc_block_small", "walmart_amazon"])
def test_every_real_csv_reads_strictly_as_the_csv_module_reads_it(folder: str) -> None:
    paths = sorted((SHARED_DATA / folder).glob("*.csv"))
    assert [path.name for path in paths] == ["tableA.csv", "tableB.csv", "test.csv", "train.csv", "valid.csv"]
    for path in paths:
        with open(path, encoding="utf-8", newline="") as handle:
            header, *rows = csv.reader(handle)
        # every record has the header's field count (else csv_records raises) and the same values
        assert [values for _, _, values in csv_records(path, header)] == rows
