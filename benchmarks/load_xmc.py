"""Scale benchmark: read an LF-AmazonTitles-131K-shaped train split and turn it into training rows.

    .venv/bin/python benchmarks/load_xmc.py --data_dir /tmp/lf_synthetic --form json
    .venv/bin/python benchmarks/load_xmc.py --data_dir /tmp/lf_synthetic --form raw

Writes the synthetic files first when data_dir has none (294,805 train / 134,835 test queries, 131,073 labels),
then measures, in a fresh child process, the wall time of read_xmc(split="trn") + training_rows and the child's
peak resident memory. Target: under 60 s and under 2 GB.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from xmc_like import LF_AMAZONTITLES_131K, write_xmc_like

from alc_hf.data import read_xmc, training_rows

FORM_FILES = {"json": ["trn.json.gz", "lbl.json.gz"], "raw": ["trn_X.txt", "Y.txt", "trn_X_Y.txt"]}


def measure(data_dir: Path, form: str) -> None:
    # read_xmc prefers the JSON-lines form, so the raw-text form is measured from a folder that holds only it.
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for name in FORM_FILES[form]:
            (folder / name).symlink_to((data_dir / name).resolve())
        start = time.perf_counter()
        data = read_xmc(folder, "trn")
        read_seconds = time.perf_counter() - start
        rows = training_rows(data)
        total_seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "form": form,
                "queries": data.num_queries,
                "labels": data.num_labels,
                "rows": len(rows),
                "read_s": round(read_seconds, 2),
                "read_and_rows_s": round(total_seconds, 2),
                "peak_rss_mb": round(peak_mb),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", type=Path, default=Path(tempfile.gettempdir()) / "alc_hf_lf_synthetic")
    parser.add_argument("--form", choices=sorted(FORM_FILES), default="json")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.data_dir, args.form)
        return
    if not all((args.data_dir / name).is_file() for names in FORM_FILES.values() for name in names):
        print(f"writing LF-AmazonTitles-131K-shaped files into {args.data_dir} ...", flush=True)
        partial = args.data_dir.with_name(args.data_dir.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        write_xmc_like(partial, LF_AMAZONTITLES_131K)
        shutil.rmtree(args.data_dir, ignore_errors=True)
        partial.rename(args.data_dir)
    command = [sys.executable, __file__, "--measure", "--data_dir", str(args.data_dir), "--form", args.form]
    subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
