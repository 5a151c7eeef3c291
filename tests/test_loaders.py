"""The one loader for query–label data (``alc_hf.data.load_query_label_data`` / ``load_evaluation_views``): BEIR
folders, tables of pairs (CSV, JSON lines, Parquet, a DatasetDict), product tables with chosen text fields; what each
reads checked against what the test wrote, the located errors, and training and evaluation end to end."""

from __future__ import annotations

import csv
import gzip
import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import Dataset, DatasetDict
from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

from alc_hf.cli import main as cli_main
from alc_hf.data import builtin_catalog, load_evaluation_views, load_query_label_data, read_xmc, training_rows
from alc_hf.data.formats import DataFormatError
from alc_hf.evaluation import CoverageEvaluator
from alc_hf.training.loss_composition import build_loss
from tests.conftest import SHARED_DATA
from tests.test_readers import make_json_dir, rows_of, write_jsonl
from tests.test_recipe import run_recipe

WALMART_AMAZON = SHARED_DATA / "walmart_amazon"
# A short run: two steps, no evaluation before training (the recipe evaluates once, after).
SHORT = ["--max_steps", "2", "--evaluate_before_training", "false"]


def coverage(path: Path) -> dict[str, int]:
    """Queries per split in a written coverage report."""
    report = json.loads(path.read_text())
    return {name: split["num_queries"] for name, split in report["splits"].items()}


def evaluate_with_cli(model_dir: Path, output_dir: Path, *data: str) -> dict[str, int]:
    assert (
        cli_main(
            ["evaluate", str(model_dir), "--output_dir", str(output_dir), "--per_device_eval_batch_size", "256", *data]
        )
        == 0
    )
    return coverage(output_dir / "coverage.json")


# ------------------------------------------------------------------------------------------------------------ BEIR


def write_beir(folder: Path, corpus: list, queries: list, qrels: dict[str, str]) -> Path:
    folder.mkdir(exist_ok=True)
    write_jsonl(folder / "corpus.jsonl", corpus)
    write_jsonl(folder / "queries.jsonl", queries)
    (folder / "qrels").mkdir(exist_ok=True)
    for split, body in qrels.items():
        (folder / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + body, encoding="utf-8")
    return folder


CORPUS = [
    {"_id": "d1", "title": "Sony", "text": "WH-1000XM3 headphones"},
    {"_id": "d2", "title": "", "text": "Jabra Evolve 75 headset"},  # an empty title is skipped
    {"_id": 3, "text": "Acme widget"},  # an integer id, no title
    {"_id": "d4", "title": "Acme", "text": "gadget", "metadata": {}},
]
BEIR_QUERIES = [
    {"_id": "q1", "text": "sony noise cancelling"},
    {"_id": "q2", "text": "jabra headset"},
    {"_id": "q3", "text": "acme thing"},
]
BEIR_QRELS = {
    "train": "q2\td2\t1\nq1\td1\t2\nq1\td2\t0\nq1\td1\t1\nq3\t3\t1\nq3\td4\t1\n",  # q1-d1 twice: counted once
    "dev": "q3\td4\t1\n",
    "test": "q1\td1\t1\nq2\td2\t1\nq2\t3\t0\nq2\td4\t0\nq3\td1\t0\n",  # q3 has no relevant document
}


def test_beir_folder_reads_as_written(tmp_path):
    folder = write_beir(tmp_path, CORPUS, BEIR_QUERIES, BEIR_QRELS)
    train = load_query_label_data(folder, "beir")
    assert train.labels == ["Sony WH-1000XM3 headphones", "Jabra Evolve 75 headset", "Acme widget", "Acme gadget"]
    assert train.query_ids == ["q2", "q1", "q3"]  # order of first appearance in the qrels
    assert train.queries == ["jabra headset", "sony noise cancelling", "acme thing"]
    assert rows_of(train.positives) == [[1], [0], [2, 3]]
    assert rows_of(train.negatives) == [[], [1], []]  # score 0: a labelled negative
    rows = training_rows(train.select_queries(np.array([False, True, False])), num_hard_negatives=1)
    assert rows["anchor"] == ["sony noise cancelling"] and rows["negative_1"] == ["Jabra Evolve 75 headset"]

    calibration, test = load_evaluation_views(folder, "beir")  # dev is the calibration split; corpus view
    assert calibration.queries == ["acme thing"] and rows_of(calibration.relevant) == [[3]]
    assert test.queries == ["sony noise cancelling", "jabra headset", "acme thing"]
    assert rows_of(test.relevant) == [[0], [1], []] and test.candidates is None and test.corpus == train.labels
    _, labelled = load_evaluation_views(folder, "beir", view="labelled")  # the negatives become candidates
    assert rows_of(labelled.candidates) == [[0], [1, 2, 3], [0]]

    (folder / "qrels" / "dev.tsv").rename(folder / "qrels" / "valid.tsv")  # the other name of a calibration split
    assert load_evaluation_views(folder, "beir")[0].queries == ["acme thing"]
    (folder / "qrels" / "valid.tsv").unlink()  # none: the test queries are halved at random (seed)
    calibration, test = load_evaluation_views(folder, "beir", seed=3)
    assert sorted(calibration.queries + test.queries) == sorted(q["text"] for q in BEIR_QUERIES)
    assert len(calibration.queries) == 2 and not set(calibration.queries) & set(test.queries)
    assert load_evaluation_views(folder, "beir", seed=3)[0].queries == calibration.queries


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("qrels/test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\nq9\td1\t1\n"), r"test\.tsv:3: query-id 'q9' not "),
        (("qrels/test.tsv", "query-id\tcorpus-id\tscore\nq1\td7\t1\n"), r"test\.tsv:2: corpus-id 'd7' not found in "),
        (("qrels/test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1.5\n"), r"test\.tsv:2: score '1\.5', expected an "),
        (("qrels/test.tsv", "query-id\tdoc\tscore\nq1\td1\t1\n"), r"test\.tsv:1: missing column\(s\) corpus-id"),
        (("qrels/test.tsv", "query-id\tcorpus-id\tscore\n"), r"test\.tsv: no rows after the header \(split 'test'"),
        (("qrels/test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td1\t0\n"), r"test\.tsv:3: query 'q1' and "),
        (("corpus.jsonl", '{"_id": "d1", "text": "a"}\n{"text": "b"}\n'), r"corpus\.jsonl:2: missing key\(s\) _id"),
        (("corpus.jsonl", '{"_id": "d1", "text": "a"}\n{"_id": "d1", "text": "b"}\n'), r"jsonl:2: repeats _id 'd1'"),
        (("corpus.jsonl", '{"_id": "d1", "title": " ", "text": ""}\n'), r"corpus\.jsonl:1: empty text \(title and"),
        (("queries.jsonl", '{"_id": "q1", "text": 7}\n'), r"queries\.jsonl:1: expected 'text' to be a string"),
        (
            ("queries.jsonl", '{"_id": 1.5, "text": "a"}\n'),
            r"queries\.jsonl:1: expected an '_id' \(a string\), found 1\.5",
        ),
        (
            ("qrels/test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\tx\n"),
            r"test\.tsv:3: row 2 has 4 fields, expected 3 as in the header \(an unquoted tab inside a value\? quote",
        ),
        (
            ("qrels/test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\n\nq2\td2\n"),
            r"test\.tsv:4: row 2 has 2 fields, expected 3 as in the header \(a value or a delimiter missing\?\)",
        ),
        (
            ("qrels/test.tsv", b"query-id\tcorpus-id\tscore\nq1\td\xe91\t1\n"),
            r"test\.tsv:2: not valid UTF-8 at column 5 \(byte 0xe9: invalid continuation byte\); save the file as",
        ),
        (
            ("corpus.jsonl", b'{"_id": "d1", "text": "a"}\n{"_id": "d2", "text": "caf\xe9"}\n'),
            r"corpus\.jsonl:2: not valid UTF-8 at column 27 \(byte 0xe9: invalid continuation byte\); save the ",
        ),
        (
            ("queries.jsonl", b'{"_id": "q1", "text": "\xffa"}\n'),
            r"queries\.jsonl:1: not valid UTF-8 at column 24 \(byte 0xff: invalid start byte\); save the file as",
        ),
        (
            ("queries.jsonl", '{"_id": "q1", "text": "a"}\n{"_id": "q2", "text": "b"}{"_id": "q3", "text": "c"}\n'),
            r"queries\.jsonl:2: malformed JSON at column 27: Extra data \(one JSON object per line\)",
        ),
    ],
)
def test_beir_located_errors(tmp_path, edit, message):
    write_beir(tmp_path, CORPUS, BEIR_QUERIES, BEIR_QRELS)
    name, content = edit
    (tmp_path / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(DataFormatError, match=message):
        load_query_label_data(tmp_path, "beir", split="test")


def test_beir_missing_split_names_the_splits_found(tmp_path):
    write_beir(tmp_path, CORPUS, BEIR_QUERIES, {"train": "q1\td1\t1\n"})
    with pytest.raises(FileNotFoundError, match=r"test\.tsv is missing \(splits found: train\)"):
        load_evaluation_views(tmp_path, "beir")


def generated_beir(folder: Path, num_docs: int = 48) -> tuple[Path, dict[str, list[str]]]:
    """A BEIR folder of products: every third document is a query's target, its neighbour a labelled negative;
    the queries are dealt to train, dev and test in turn. Returns the folder and each split's query ids."""
    brands = ("sony", "bose", "jabra", "acme")
    corpus = [
        {"_id": f"doc{i}", "title": brands[i % 4], "text": f"headphones model {100 + i}"} for i in range(num_docs)
    ]
    queries, qrels, split_queries = [], {"train": "", "dev": "", "test": ""}, {"train": [], "dev": [], "test": []}
    for n, target in enumerate(range(0, num_docs - 1, 3)):
        split = ("train", "train", "dev", "test")[n % 4]
        queries.append({"_id": f"query{n}", "text": f"{brands[target % 4]} {100 + target} headset"})
        qrels[split] += f"query{n}\tdoc{target}\t1\nquery{n}\tdoc{target + 1}\t0\n"
        split_queries[split].append(f"query{n}")
    return write_beir(folder, corpus, queries, qrels), split_queries


def test_beir_trains_and_evaluates_end_to_end(tiny_encoder_dir, tmp_path):
    folder, split_queries = generated_beir(tmp_path / "beir")
    train = load_query_label_data(folder, "beir")
    assert train.query_ids == split_queries["train"]
    targets = [3 * int(query_id.removeprefix("query")) for query_id in split_queries["train"]]
    assert rows_of(train.positives) == [[target] for target in targets]
    assert rows_of(train.negatives) == [[target + 1] for target in targets]
    assert train.labels[3] == "acme headphones model 103"
    run_recipe(tiny_encoder_dir, tmp_path / "run", "--data", "beir", "--data_dir", str(folder), *SHORT)
    expected = {"calibration": len(split_queries["dev"]), "test": len(split_queries["test"])}
    assert coverage(tmp_path / "run" / "final" / "coverage_after.json") == expected
    data = ["--data", "beir", "--data_dir", str(folder)]
    assert evaluate_with_cli(tmp_path / "run" / "final", tmp_path / "eval", *data) == expected


# ----------------------------------------------------------------------------------------------------------- pairs

PAIR_OPTIONS = {
    "query_column": "query",
    "label_column": "product",
    "query_id_column": "qid",
    "label_id_column": "pid",
    "relevance_column": "match",
}
PAIR_FLAGS = [f"--{name}={value}" for name, value in PAIR_OPTIONS.items()]


def pair_rows(queries: range, split: str) -> dict[str, list]:
    """Query n of a split matches product 2n and is labelled against its neighbour 2n + 1 (a hard negative)."""
    rows = {"qid": [], "query": [], "pid": [], "product": [], "match": []}
    for n in queries:
        for product, match in ((2 * n, 1), (2 * n + 1, 0)):
            rows["qid"].append(f"{split}-{n}")
            rows["query"].append(f"offer for item {2 * n} of brand {n % 5}")
            rows["pid"].append(product)  # integer ids: read as their text
            rows["product"].append(f"brand {product % 5} item {product}")
            rows["match"].append(match)
    return rows


def test_pairs_parquet_reads_as_written_and_trains_and_evaluates(tiny_encoder_dir, tmp_path):
    folder = tmp_path / "pairs"
    folder.mkdir()
    written = {"train": pair_rows(range(0, 12), "train"), "valid": pair_rows(range(12, 18), "valid")}
    written["test"] = pair_rows(range(12, 20), "test")  # products 24..35 are shared with valid
    for split, rows in written.items():
        pq.write_table(pa.table(rows), folder / f"{split}.parquet")

    train = load_query_label_data(folder, "pairs", **PAIR_OPTIONS)
    test = load_query_label_data(folder, "pairs", split="test", **PAIR_OPTIONS)
    # One label space over every split (files in sorted order: test, train, valid), deduplicated by product id.
    products = list(dict.fromkeys(p for split in ("test", "train", "valid") for p in written[split]["pid"]))
    assert train.labels == test.labels == [f"brand {p % 5} item {p}" for p in products]
    assert train.query_ids == [f"train-{n}" for n in range(12)]
    assert train.queries == [f"offer for item {2 * n} of brand {n % 5}" for n in range(12)]
    assert rows_of(train.positives) == [[products.index(2 * n)] for n in range(12)]
    assert rows_of(train.negatives) == [[products.index(2 * n + 1)] for n in range(12)]
    assert rows_of(test.positives) == [[2 * i] for i in range(8)]  # labels 0..15 are the test split's products
    assert rows_of(test.negatives) == [[2 * i + 1] for i in range(8)]

    calibration, test_view = load_evaluation_views(folder, "pairs", **PAIR_OPTIONS)  # labelled view by default
    assert rows_of(test_view.candidates) == [[2 * i, 2 * i + 1] for i in range(8)]
    assert len(calibration.queries) == 6 and calibration.corpus == test_view.corpus

    data = ["--data", "pairs", "--data_dir", str(folder), *PAIR_FLAGS]
    run_recipe(tiny_encoder_dir, tmp_path / "run", *data, "--num_hard_negatives", "1", *SHORT)
    assert coverage(tmp_path / "run" / "final" / "coverage_after.json") == {"calibration": 6, "test": 8}
    assert evaluate_with_cli(tmp_path / "run" / "final", tmp_path / "eval", *data) == {"calibration": 6, "test": 8}


def test_pairs_dataset_dict_trains_and_evaluates_in_memory(tiny_model, tmp_path):
    # No id and no relevance column: a query and a label are their texts, every row is a positive.
    def split(numbers: range) -> Dataset:
        return Dataset.from_dict(
            {
                "anchor": [f"buy item {n // 2}" for n in numbers],  # two rows per query: two positives
                "positive": [f"catalog item {n // 2} variant {n % 2}" for n in numbers],
            }
        )

    source = DatasetDict(train=split(range(0, 40)), test=split(range(40, 56)))
    options = {"query_column": "anchor", "label_column": "positive"}
    train = load_query_label_data(source, "pairs", **options)
    assert train.queries == [f"buy item {n}" for n in range(20)] and train.negatives is None
    assert train.labels[:3] == ["catalog item 0 variant 0", "catalog item 0 variant 1", "catalog item 1 variant 0"]
    assert rows_of(train.positives) == [[2 * n, 2 * n + 1] for n in range(20)]
    assert "DatasetDict" in train.source

    calibration, test = load_evaluation_views(source, "pairs", seed=1, **options)  # no calibration split: halves
    assert sorted(calibration.queries + test.queries) == sorted(f"buy item {n}" for n in range(20, 28))
    assert len(test.corpus) == 56 and test.candidates is None  # every label of every split; the corpus view
    for view in (calibration, test):
        assert [view.corpus[i] for i in view.relevant[0]] == [
            f"catalog {view.queries[0][4:]} variant {v}" for v in (0, 1)
        ]

    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=8, report_to="none", use_cpu=True
    )
    evaluator = CoverageEvaluator(calibration, test, name="pairs", batch_size=64)
    trainer = SentenceTransformerTrainer(
        model=tiny_model,
        args=args,
        train_dataset=training_rows(train),
        loss=build_loss(tiny_model),
        evaluator=evaluator,
    )
    trainer.train()
    assert trainer.state.global_step == 2
    report = evaluator.compute_report(tiny_model)
    assert (report.calibration.num_queries, report.test.num_queries) == (4, 4)
    assert report.test.num_with_match == 4


def write_pair_file(folder: Path, name: str, content: str | bytes) -> None:
    """Text is written as UTF-8, bytes as they are; gzipped when the name ends in .gz."""
    folder.mkdir(exist_ok=True)
    data = content.encode() if isinstance(content, str) else content
    (folder / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)


CSV_OK = "q,l,r\nred shoe,shoe A,1\n"


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            {"train.csv": "q,label,r\nred shoe,shoe A,1\n"},
            r"train\.csv:1: missing column\(s\) l \(header: q, label, r\)",
        ),
        ({"train.csv": CSV_OK + "red shoe,shoe B,2\n"}, r"train\.csv:3: column 'r': relevance '2', expected 0 \(not "),
        (
            {"train.csv": CSV_OK + "red shoe,shoe A,0\n"},
            r"train\.csv:3: query 'red shoe' and label 'shoe A' marked not ",
        ),
        ({"train.csv": CSV_OK + ",shoe B,1\n"}, r"train\.csv:3: column 'q': expected a non-empty text, found ''"),
        ({"train.csv": "q,l,r\n"}, r"train\.csv: no rows \(split 'train' is empty\)"),
        (
            {
                "train.csv": CSV_OK,
                # a blank line is skipped (line numbers count it), a missing key is an error in any split
                "test.jsonl": '{"q": "a", "l": "b", "r": 1}\n\n{"q": "c", "l": "d", "r": 0}\n{"q": "e", "l": "f"}\n',
            },
            r"test\.jsonl:4: missing key\(s\) r \(keys: q, l\)",
        ),
        ({"train.csv": CSV_OK, "train.parquet": ""}, r"two files for split 'train': train\.csv and train\.parquet"),
        ({"train.csv": CSV_OK, "test.parquet": "not parquet"}, r"test\.parquet: cannot be read as Parquet"),
    ],
)
def test_pairs_located_errors(tmp_path, files, message):
    for name, text in files.items():
        write_pair_file(tmp_path, name, text)
    with pytest.raises(DataFormatError, match=message):
        load_query_label_data(tmp_path, "pairs", query_column="q", label_column="l", relevance_column="r")


@pytest.mark.parametrize("name", ["train.csv", "train.csv.gz"])
@pytest.mark.parametrize(
    ("header", "rest", "options"),
    [("q,l", "", {}), ("q,l,r", ",1", {"relevance_column": "r"})],
)
def test_pairs_csv_unquoted_comma_is_a_field_count_error(tmp_path, name, header, rest, options):
    # The row: the comma in "sony wh1000xm5, black" is not quoted, so the query would read "sony wh1000xm5"
    # and the label "black" (and the relevance "corsair ...").
    width = header.count(",") + 1
    rows = f"red shoe,shoe A{rest}\nsony wh1000xm5, black,corsair 115gb ddr5 kit{rest}\n"
    write_pair_file(tmp_path, name, f"{header}\n{rows}")
    message = (
        rf"{re.escape(name)}:3: row 2 has {width + 1} fields, expected {width} as in the header "
        r"\(an unquoted comma inside a value\? quote the value\)$"
    )
    with pytest.raises(DataFormatError, match=message):
        load_query_label_data(tmp_path, "pairs", query_column="q", label_column="l", **options)
    # Quoted, the row reads as written; behind a BOM the first column is still 'q'; a later bad row (line 5, after
    # a quoted newline) is still named by its own line.
    quoted = f'red shoe,"shoe\nA"{rest}\n"sony wh1000xm5, black",corsair 115gb ddr5 kit{rest}\n'
    write_pair_file(tmp_path, name, f"\ufeff{header}\r\n{quoted}")
    data = load_query_label_data(tmp_path, "pairs", query_column="q", label_column="l", **options)
    assert data.queries == ["red shoe", "sony wh1000xm5, black"]
    assert data.labels == ["shoe\nA", "corsair 115gb ddr5 kit"]
    write_pair_file(tmp_path, name, f"\ufeff{header}\r\n{quoted}red boot,boot A{rest},extra\n")
    with pytest.raises(DataFormatError, match=rf"{re.escape(name)}:5: row 3 has {width + 1} fields"):
        load_query_label_data(tmp_path, "pairs", query_column="q", label_column="l", **options)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "train.csv",
            CSV_OK + "red boot,boot\n",
            r"train\.csv:3: row 2 has 2 fields, expected 3 as in the header \(a value or a delimiter missing\?\)$",
        ),
        (
            "train.csv",
            CSV_OK.encode() + b"red boot,caf\xe9,1\n",
            r"train\.csv:3: not valid UTF-8 at column 13 \(byte 0xe9: invalid continuation byte\); save the file as "
            r"UTF-8$",
        ),
        (
            "train.csv",
            b"q,l\xff,r\nred shoe,shoe A,1\n",
            r"train\.csv:1: not valid UTF-8 at column 4 \(byte 0xff: invalid start byte\); save the file as UTF-8$",
        ),
        ("train.csv", "q,l,r,l\nred shoe,shoe A,1,x\n", r"train\.csv:1: column 'l' appears twice in the header"),
        (  # the JSON-lines form of a mis-split value: a list where a text is expected
            "train.jsonl",
            '{"q": "red shoe", "l": "shoe A", "r": 1}\n{"q": ["sony", "black"], "l": "x", "r": 1}\n',
            r"train\.jsonl:2: column 'q': expected a non-empty text, found \['sony', 'black'\]$",
        ),
        (
            "train.jsonl",
            '{"q": "red shoe", "l": "shoe A", "r": 1}\n\n{"q": "a", "l": 42, "r": 0}\n',
            r"train\.jsonl:3: column 'l': expected a non-empty text, found 42$",
        ),
        (
            "train.jsonl",
            '{"q": "red shoe", "l": "shoe A", "r": 1}\n{"q": "a", "l": "b", "r": 1}{"q": "c", "l": "d", "r": 1}\n',
            r"train\.jsonl:2: malformed JSON at column 29: Extra data \(one JSON object per line\)$",
        ),
        (
            "train.jsonl.gz",
            b'{"q": "red shoe", "l": "shoe A", "r": 1}\n{"q": "caf\xe9", "l": "b", "r": 1}\n',
            r"train\.jsonl\.gz:2: not valid UTF-8 at column 11 \(byte 0xe9: invalid continuation byte\); save the ",
        ),
    ],
)
def test_pairs_misread_values_are_located(tmp_path, name, content, message):
    write_pair_file(tmp_path, name, content)
    with pytest.raises(DataFormatError, match=message):
        load_query_label_data(tmp_path, "pairs", query_column="q", label_column="l", relevance_column="r")


def test_pairs_parquet_and_dataset_values_that_are_not_texts_are_located(tmp_path):
    pq.write_table(pa.table({"q": [101, 102], "l": ["shoe A", "shoe B"]}), tmp_path / "train.parquet")
    with pytest.raises(
        DataFormatError, match=r"train\.parquet row 1: column 'q': expected a non-empty text, found 101$"
    ):
        load_query_label_data(tmp_path, "pairs", query_column="q", label_column="l")
    pq.write_table(pa.table({"q": ["a", "b"], "l": [["shoe"], ["sony", "black"]]}), tmp_path / "train.parquet")
    with pytest.raises(DataFormatError, match=r"train\.parquet row 1: column 'l': expected a non-empty text, found \["):
        load_query_label_data(tmp_path, "pairs", query_column="q", label_column="l")
    pq.write_table(pa.table({"q": ["a", "b"], "l": ["shoe A", None]}), tmp_path / "train.parquet")
    with pytest.raises(
        DataFormatError, match=r"train\.parquet row 2: column 'l': expected a non-empty text, found None$"
    ):
        load_query_label_data(tmp_path, "pairs", query_column="q", label_column="l")
    source = DatasetDict(train=Dataset.from_dict({"q": ["a", "b"], "l": ["x", "y"], "n": [3, 4]}))
    with pytest.raises(
        DataFormatError, match=r"DatasetDict\['train'\] row 1: column 'n': expected a non-empty text, found 3$"
    ):
        load_query_label_data(source, "pairs", query_column="n", label_column="l")


def test_pairs_ids_and_in_memory_errors(tmp_path):
    ids = {"query_column": "q", "label_column": "l", "query_id_column": "qid", "label_id_column": "lid"}
    write_pair_file(tmp_path, "train.jsonl", '{"qid": 1, "q": "a", "lid": 7, "l": "x"}\n')
    write_pair_file(tmp_path, "test.jsonl", '{"qid": 1, "q": "b", "lid": 7, "l": "y"}\n')
    with pytest.raises(DataFormatError, match=r"train\.jsonl:1: label id '7' has text 'x', but .*test\.jsonl:1 gives"):
        load_query_label_data(tmp_path, "pairs", **ids)
    write_pair_file(
        tmp_path, "test.jsonl", '{"qid": 1, "q": "b", "lid": 7, "l": "x"}\n{"qid": 1, "q": "c", "lid": 7, "l": "x"}\n'
    )
    with pytest.raises(DataFormatError, match=r"test\.jsonl:2: query id '1' has text 'c', but .*test\.jsonl:1 gives"):
        load_query_label_data(tmp_path, "pairs", split="test", **ids)
    with pytest.raises(ValueError, match=r"no split 'dev' in .*: found test, train"):
        load_query_label_data(tmp_path, "pairs", split="dev", **ids)

    booleans = DatasetDict(
        train=Dataset.from_dict({"q": ["a", "a", "b"], "l": ["x", "y", "x"], "r": [True, False, True]})
    )
    data = load_query_label_data(booleans, "pairs", query_column="q", label_column="l", relevance_column="r")
    assert rows_of(data.positives) == [[0], [0]] and rows_of(data.negatives) == [[1], []]
    source = DatasetDict(train=Dataset.from_dict({"q": ["a", "b"], "l": ["x", "y"], "r": [1, 0.5]}))
    with pytest.raises(DataFormatError, match=r"DatasetDict\['train'\] row 2: column 'r': relevance 0\.5, expected"):
        load_query_label_data(source, "pairs", query_column="q", label_column="l", relevance_column="r")
    with pytest.raises(
        DataFormatError, match=r"DatasetDict\['train'\]: missing column\(s\) query \(columns: q, l, r\)"
    ):
        load_query_label_data(source, "pairs", query_column="query", label_column="l")
    with pytest.raises(DataFormatError, match=r"\['test'\]: no rows \(split 'test' is empty\)"):
        load_query_label_data(
            {"train": source["train"], "test": source["train"].select([])}, "pairs", query_column="q", label_column="l"
        )
    with pytest.raises(TypeError, match="expected a file path or a datasets.Dataset"):
        load_query_label_data({"train": [("a", "x")]}, "pairs", query_column="q", label_column="l")


def test_options_that_do_not_fit_the_format_are_refused(tmp_path):
    with pytest.raises(ValueError, match="text_fields applies to data format wdc or tables, not to 'beir'"):
        load_query_label_data(tmp_path, "beir", text_fields=["title"])
    with pytest.raises(ValueError, match="query_column applies to data format pairs, not to 'xmc'"):
        load_evaluation_views(tmp_path, "xmc", query_column="q")
    with pytest.raises(ValueError, match="'pairs' needs query_column and label_column"):
        load_query_label_data(tmp_path, "pairs", query_column="q")
    with pytest.raises(ValueError, match="needs a data_dir"):
        load_query_label_data(None, "beir")
    with pytest.raises(ValueError, match="data format must be one of"):
        load_query_label_data(tmp_path, "csv")
    with pytest.raises(TypeError, match="unknown data option"):
        load_query_label_data(tmp_path, "pairs", query_colum="q", label_column="l")


# ---------------------------------------------------------------------------------------------- product tables


def test_product_tables_with_chosen_text_fields(tiny_encoder_dir, tmp_path, capsys):
    (tmp_path / "tableA.csv").write_text("id,name,maker\na0,Red shoe,Acme\na1,Blue hat,\n", encoding="utf-8")
    (tmp_path / "tableB.csv").write_text(
        "id,name,maker\nb0,red shoe 42,Acme\nb1,hat,\nb2,sock,Acme\n", encoding="utf-8"
    )
    for split in ("train", "valid", "test"):
        (tmp_path / f"{split}.csv").write_text("ltable_id,rtable_id,label\na0,b0,1\na1,b1,1\na1,b2,0\n")
    data = load_query_label_data(tmp_path, "tables", text_fields=["name", "maker"])
    assert data.queries == ["Red shoe Acme", "Blue hat"]  # an empty field is skipped
    assert data.labels == ["red shoe 42 Acme", "hat", "sock Acme"]
    assert rows_of(data.positives) == [[0], [1]] and rows_of(data.negatives) == [[], [2]]
    assert load_query_label_data(tmp_path, "wdc", text_fields=["name"]).labels == ["red shoe 42", "hat", "sock"]
    calibration, test = load_evaluation_views(tmp_path, "tables", text_fields=["name"])  # labelled view by default
    assert test.queries == ["Red shoe", "Blue hat"] and rows_of(test.candidates) == [[0], [1, 2]]
    with pytest.raises(
        DataFormatError, match=r"tableA\.csv:1: missing column\(s\) brand, title \(header: id, name, maker\)"
    ):
        load_query_label_data(tmp_path, "tables")  # the default text fields: WDC's brand and title
    with pytest.raises(DataFormatError, match=r"tableA\.csv:1: missing column\(s\) model \(header: id, name, maker\)"):
        load_evaluation_views(tmp_path, "tables", text_fields=["name", "model"])
    data = ["--data", "tables", "--data_dir", str(tmp_path), "--text_fields", "name", "maker"]
    assert evaluate_with_cli(tiny_encoder_dir, tmp_path / "eval", *data) == {"calibration": 2, "test": 2}
    assert cli_main(["evaluate", str(tiny_encoder_dir), "--data", "tables", "--data_dir", str(tmp_path)]) == 2
    assert "tableA.csv:1: missing column(s) brand, title (header: id, name, maker)" in capsys.readouterr().err


@pytest.mark.shared_data
def test_walmart_amazon_with_brand_title_modelno_trains_and_evaluates(tiny_encoder_dir, tmp_path):
    fields = ["brand", "title", "modelno"]
    with open(WALMART_AMAZON / "tableA.csv", newline="", encoding="utf-8") as handle:
        table_a = {row["id"]: row for row in csv.DictReader(handle)}
    train = load_query_label_data(WALMART_AMAZON, "tables", text_fields=fields)
    assert (train.num_queries, train.num_labels, int(train.positives.lengths().sum())) == (1424, 22074, 576)
    for query_id, text in zip(train.query_ids, train.queries, strict=True):
        assert text == " ".join(table_a[query_id][f].strip() for f in fields if table_a[query_id][f].strip())

    data = ["--data", "tables", "--data_dir", str(WALMART_AMAZON), "--text_fields", *fields]
    run_recipe(tiny_encoder_dir, tmp_path / "run", *data, "--max_train_samples", "64", "--max_seq_length", "16", *SHORT)
    # The block view of valid and test; alc-hf evaluate takes --text_fields alike (test_product_tables_...).
    assert coverage(tmp_path / "run" / "final" / "coverage_after.json") == {"calibration": 927, "test": 900}


# --------------------------------------------------------------------------------------- catalog and XMC as before


def test_catalog_and_xmc_read_through_the_one_entry_point(tmp_path):
    catalog = load_query_label_data()
    assert catalog.source == builtin_catalog(split="trn").source and catalog.queries == builtin_catalog().queries
    calibration, test = load_evaluation_views(seed=1)
    assert calibration.queries == builtin_catalog(seed=1, split="val").queries
    assert test.queries == builtin_catalog(seed=1, split="tst").queries and test.candidates is None

    make_json_dir(tmp_path, split="trn")
    make_json_dir(tmp_path, split="tst")
    train = load_query_label_data(tmp_path, "xmc")
    assert train.queries == read_xmc(tmp_path, "trn").queries
    calibration, test = load_evaluation_views(tmp_path, "xmc", seed=0)  # the test queries halved at random
    assert sorted(calibration.queries + test.queries) == sorted(read_xmc(tmp_path, "tst").queries)
    assert len(calibration.queries) == 2 and not set(calibration.queries) & set(test.queries)
