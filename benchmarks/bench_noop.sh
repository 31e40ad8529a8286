#!/bin/bash
# A re-run with nothing to compute, two checkouts side by side:
#   benchmarks/bench_noop.sh OLD_CHECKOUT NEW_CHECKOUT DEMO_FOLDER
# DEMO_FOLDER: where `synque demo` ran once (it holds demo-data/ and results/demo). The two
# checkouts alternate five times, so load that comes and goes hits both alike; prints wall s.
set -e
OLD=$1; NEW=$2
cd "$3"
PY=${PYTHON:-python}
for i in 1 2 3 4 5; do
  for v in old new; do
    if [ $v = old ]; then R=$OLD; else R=$NEW; fi
    TIMEFORMAT="$v %R"
    time PYTHONPATH=$R $PY -m synque_ray score "$R/synque_ray/demo.yaml" --quiet >/dev/null 2>&1
  done
done
