"""The rest of ``make demo``'s loop, after training: certify a threshold on the built-in catalog's test traffic, then
decide new traffic with it.

    python recipes/demo_loop.py outputs/demo/final

1. ``alc-hf certify`` writes a sheet of 300 top-1 predictions of the test offers, drawn at random from the
   best-scored 60% of them.
2. Here **the catalog's ground truth plays the person who labels them** (in production a person fills in the
   ``correct`` column); ``alc-hf certify --labels`` then certifies the threshold and keeps it in the model folder.
3. ``alc-hf match`` decides the catalog's validation offers — traffic the certificate was not made on — against the
   catalog's products, with that certificate, and says where the decisions are.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from alc_hf.cli import main as alc_hf
from alc_hf.data import builtin_catalog, evaluation_view
from alc_hf.evaluation.certification_sheet import read_certifications


def label_with_ground_truth(sheet: Path) -> None:
    """Fill in the sheet's ``correct`` column from the built-in catalog's test split: 1 when the top-1 product is
    one of the offer's products."""
    view = evaluation_view(builtin_catalog(split="tst"))
    truth = {query: {view.corpus[j] for j in view.relevant[i]} for i, query in enumerate(view.queries)}
    with open(sheet, newline="", encoding="utf-8") as handle:
        header, *rows = list(csv.reader(handle))
    for row in rows:
        row[5] = "1" if row[3] in truth[row[2]] else "0"
    with open(sheet, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, lineterminator="\n").writerows([header, *rows])


def write_records(path: Path, texts: list[str], prefix: str) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(("id", "text"))
        writer.writerows((f"{prefix}{i}", text) for i, text in enumerate(texts))
    return path


def main(model_dir: str) -> int:
    work = Path(model_dir).parent / "loop"
    work.mkdir(parents=True, exist_ok=True)
    sheet = work / "labels.csv"
    print(f"\n[1/3] Certify: a sheet of 300 test offers' top-1 products to label ({sheet})", flush=True)
    # Labels drawn from the best-scored 60% of the traffic, where a 90% threshold can be: none is spent below.
    step_1 = [model_dir, "--split", "tst", "--budget", "300", "--max_coverage", "0.6", "--sheet", str(sheet)]
    step_1 += ["--overwrite", "true"]
    if alc_hf(["certify", *step_1]) != 0:
        return 2
    print("\n[2/3] The catalog's ground truth plays the person who labels the sheet; then certify.", flush=True)
    label_with_ground_truth(sheet)
    if alc_hf(["certify", "--labels", str(sheet)]) != 0:
        return 2
    catalog = builtin_catalog(split="val")
    products = write_records(work / "products.csv", catalog.labels, "product-")
    offers = write_records(work / "new_offers.csv", catalog.queries, "offer-")
    decisions = work / "decisions.csv"
    print(f"\n[3/3] Match {len(catalog.queries):,} new offers (the validation split) with the certificate", flush=True)
    match = [model_dir, "--catalog", str(products), "--queries", str(offers), "--output", str(decisions)]
    latest = read_certifications(model_dir)[-1]
    if latest["certification"]["threshold"] is None:
        print("Nothing was certified at 90%: every offer goes to review (a threshold of +inf).", flush=True)
        match += ["--threshold", "inf"]
    status = alc_hf(["match", *match, "--index_dir", str(work / "index"), "--audit", "20"])
    if status == 0:
        print(f"\nThe decisions: {decisions} (accept, or review with the candidates); the certificate: {model_dir}")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "outputs/demo/final"))
