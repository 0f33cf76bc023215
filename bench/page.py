#!/usr/bin/env python3
"""The cost of status.html per run: the status files written with and without the page, side by side.

    python3 bench/page.py [--repeat N] [--pending N]

Entries as a run over N pending jobs writes them (plus the 100 latest endings); each repetition
writes status.txt + status.json, then the same plus status.html, interleaved; medians reported.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from jobroot import folders as fs  # noqa: E402
from jobroot import status as st  # noqa: E402
from jobroot.model import Entry, Phase  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--repeat", type=int, default=15)
    p.add_argument("--pending", type=int, default=1000)
    args = p.parse_args()
    now = time.time()
    live = [
        Entry(f"run-{i:05}", Phase.RUNNING if i % 3 else Phase.QUEUED, str(1000 + i), now - i, "") for i in range(args.pending)
    ]
    ended = [Entry(f"old-{i:03}", Phase.FAILED if i % 7 == 0 else Phase.DONE, str(i), now - 60 * i, "exit 3" if i % 7 == 0 else "")
             for i in range(st.RECENT)]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        without, with_page = [], []
        for _ in range(args.repeat):
            start = time.perf_counter()
            entries = live + ended
            fs.write_atomic(root / fs.STATUS_TXT, st.render_table(entries, now))
            fs.write_atomic(root / fs.STATUS_JSON, st.render_json(entries, now))
            without.append(time.perf_counter() - start)
            start = time.perf_counter()
            st.write_files(root, live, [], ended, now)
            with_page.append(time.perf_counter() - start)
        size = (root / fs.STATUS_HTML).stat().st_size
    a, b = statistics.median(without) * 1000, statistics.median(with_page) * 1000
    print(f"| status files for {args.pending} pending + {st.RECENT} endings | txt+json {a:.1f} ms | "
          f"txt+json+html {b:.1f} ms | page +{b - a:.1f} ms ({b / a:.2f}x); status.html {size / 1024:.0f} KiB |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
