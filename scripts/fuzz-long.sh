#!/usr/bin/env bash
# Long form of the fuzz suites (tests/fuzz): >= 5,000 requests per protocol with a
# random (printed) seed, every outcome counted instead of stopping at the first bad
# one, and a table of the counts at the end. Exit status: pytest's.
#
#   scripts/fuzz-long.sh                  # 5,000 examples per protocol, new seed
#   scripts/fuzz-long.sh 20000            # more
#   TRITONX_FUZZ_SEED=1234 scripts/fuzz-long.sh   # replay a run
#   TRITONX_TEST_SOURCE_TREE=1 PYTHONPATH=python scripts/fuzz-long.sh   # source tree
#
# Extra arguments after the count go to pytest (e.g. -k grpc).
set -euo pipefail
cd "$(dirname "$0")/.."
EXAMPLES=${1:-${TRITONX_FUZZ_EXAMPLES:-5000}}
shift $(($# > 0 ? 1 : 0))
SEED=${TRITONX_FUZZ_SEED:-$(python -c 'import random; print(random.randrange(2**32))')}
TALLY=${TRITONX_FUZZ_TALLY:-$(mktemp -t fuzz-tally.XXXXXX.json)}
echo "fuzz-long: $EXAMPLES examples per protocol, seed $SEED"
echo "  replay: TRITONX_FUZZ_SEED=$SEED $0 $EXAMPLES; outcomes: $TALLY"
start=$(date +%s)
status=0
TRITONX_FUZZ_LIVE_MS=${TRITONX_FUZZ_LIVE_MS:-50} \
TRITONX_FUZZ_EXAMPLES=$EXAMPLES TRITONX_FUZZ_SEED=$SEED TRITONX_FUZZ_TALLY=$TALLY \
  python -m pytest tests/fuzz -q -p no:cacheprovider --timeout=7200 "$@" || status=$?
python - "$TALLY" "$(($(date +%s) - start))" <<'PY'
import json
import sys

doc = json.load(open(sys.argv[1]))
print(f"\nfuzz-long: seed {doc['seed']}, {sys.argv[2]} s")
cols = ["requests", "success", "client error", "server error", "wrong code",
        "leaks", "hangs", "crashes"]
print("| protocol | " + " | ".join(cols) + " |")
print("| --- | " + " | ".join("---:" for _ in cols) + " |")
SERVER_CODES = ("INTERNAL", "UNKNOWN", "UNAVAILABLE", "DATA_LOSS")
for proto, c in sorted(doc["counts"].items()):
    get = c.get
    if proto == "http":
        success, client, server = get("2xx", 0), get("4xx", 0), get("5xx", 0)
        wrong = get("bad-5xx", 0)
    else:
        codes = {k: v for k, v in c.items() if k.isupper()}
        success = codes.pop("OK", 0)
        codes.pop("DEADLINE_EXCEEDED", None)
        server = sum(codes.pop(k, 0) for k in SERVER_CODES)
        client = sum(codes.values())
        wrong = get("bad-code", 0)
    row = [get("requests", 0), success, client, server, wrong, get("leak", 0),
           get("hang", 0), get("crash", 0)]
    print(f"| {proto} | " + " | ".join(str(v) for v in row) + " |")
print("(wrong code: 5xx / INTERNAL where Triton 2.51 answers a client error, or a"
      " misleading gRPC code; see docs/reliability.md)")
live = doc.get("liveness", {})
print(f"\n/v2/health/live: {live.get('probes', 0)} probes, {live.get('failures', 0)} failed,"
      f" max {live.get('max_ms', 0)} ms caused by the server"
      f" ({live.get('raw_max_ms', 0)} ms wall clock, CPU run-queue waits included)")
for proto, samples in sorted(doc.get("samples", {}).items()):
    seen = set()
    for sample in samples:
        head = sample.split("\n", 1)[0][:160]
        if head not in seen:
            seen.add(head)
            print(f"  {proto}: {head}")
PY
exit $status
