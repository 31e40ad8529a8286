#!/bin/bash
# Does a change to the CLI keep what it prints? Runs every `synque` command (score twice and
# --quiet, evaluate, report, report --out, select, demo, demo --quiet, explain, and evaluate /
# report / select on a folder without a run) on a small generated job, once with each of two
# source trees, and diffs stdout, stderr and exit codes. Timings, run stamps and progress bars
# (stderr) are masked: they differ from run to run.
#
#   benchmarks/cli_output_diff.sh BEFORE_TREE AFTER_TREE [WORKDIR]
#   e.g. git archive main | tar -x -C /tmp/before && benchmarks/cli_output_diff.sh /tmp/before "$PWD"
#
# Exit code 0 when every output matches. About 4 minutes per tree on a loaded 2-core CPU.
set -u
BEFORE=$(realpath "$1"); AFTER=$(realpath "$2"); WORK=${3:-$(mktemp -d)}
PYTHON=${PYTHON:-python}

record() {  # record CODE_ROOT FOLDER
    local code=$1 dir=$2
    rm -rf "$dir"; mkdir -p "$dir"; cd "$dir" || exit 2
    PYTHONPATH=$code $PYTHON - <<'PYEOF'
import csv
from pathlib import Path

import yaml

from synque_ray.demo import write_demo_data

quality = write_demo_data(Path("data"), n_candidates=4, rows=40, pool_rows=80)
job = {"name": "cmp", "output": "out",
       "real": {"path": "data/real/pool.jsonl", "text": "text", "sample_size": 30, "seeds": [1, 2]},
       "candidates": {"path": "data/candidates", "text": "text"},
       "embedding": {"model": "bundled-minilm", "batch_size": 32}, "proxies": ["mdm", "mmd"],
       "resources": {"embed_actors": 1}}
Path("job.yaml").write_text(yaml.safe_dump(job))
demo = {**job, "name": "demo", "output": "demo-out", "real": {**job["real"], "path": "demo-data/real/pool.jsonl"},
        "candidates": {**job["candidates"], "path": "demo-data/candidates"}}
Path("demo.yaml").write_text(yaml.safe_dump(demo))
with open("perf.csv", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["id", "f1"])
    writer.writerows(quality.items())
PYEOF
    run() { local name=$1; shift; PYTHONPATH=$code HF_HUB_OFFLINE=1 $PYTHON -m synque_ray "$@" >"$name.out" 2>"$name.err"; echo $? >"$name.rc"; }
    run score1 score job.yaml
    run score2 score job.yaml
    run scoreq score job.yaml --quiet
    run eval evaluate out --performance perf.csv --id-column id --metric f1 --top-k 2
    run evalq evaluate out --performance perf.csv --id-column id --metric f1 -q
    run evalbad evaluate norun --performance perf.csv --id-column id --metric f1
    run report report out
    run reportout report out --out elsewhere/page.html
    run reportbad report norun
    run sel select out --by ensemble --top 2 --out chosen --drop-rows "p_synthetic>0.99"
    run selbad select norun --by ensemble --top 2 --out chosen2
    run demo demo --config demo.yaml
    run demoq demo --config demo.yaml -q
    run explain explain
    mkdir -p masked
    for f in *.out *.err *.rc; do
        grep -v -E '^(embedded|scored|judged|scored rows):' "$f" | tr '\r' '\n' | grep -v -E '^(embedded|scored|judged):' |
            sed -E -e 's/[0-9]+\.[0-9]s/T/g' -e 's/[0-9]{8}T[0-9]{12}Z/STAMP/g' >"masked/$f"
    done
}

record "$BEFORE" "$WORK/before"
record "$AFTER" "$WORK/after"
if diff -r "$WORK/before/masked" "$WORK/after/masked"; then
    echo "identical: $(ls "$WORK/after/masked" | wc -l) outputs of 14 commands (under $WORK)"
else
    echo "outputs differ (under $WORK)"; exit 1
fi
