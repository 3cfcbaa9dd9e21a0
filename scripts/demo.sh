#!/usr/bin/env bash
# The demo: start ingest in embedded mode (spool directory, no Kafka),
# replay a bundled sample of realistic audit traffic through it with
# kube-apiserver's own webhook client, then run detect over the spool and
# show the findings. Nothing but Go is needed.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-bin}
PORT=${DEMO_PORT:-18480}
SAMPLE=${DEMO_SAMPLE:-testdata/demo/sample.jsonl}
work=$(mktemp -d)
ingest_pid=
cleanup() {
	if [ -n "$ingest_pid" ]; then kill "$ingest_pid" 2>/dev/null || true; wait "$ingest_pid" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT

echo "==> starting ingest on 127.0.0.1:$PORT (spool: $work/spool)"
"$BIN/ingest" --insecure-listen "127.0.0.1:$PORT" --metrics-listen "" --spool-dir "$work/spool" --cluster demo --log-level warn &
ingest_pid=$!
for _ in $(seq 1 100); do
	if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
	sleep 0.1
done

echo "==> replaying $(wc -l <"$SAMPLE") audit events from $SAMPLE through the apiserver's webhook client"
"$BIN/auditsend" --url "http://127.0.0.1:$PORT/audit/demo" "$SAMPLE"

echo "==> detect over the spool"
"$BIN/detect" --spool-dir "$work/spool" --exit-when-idle 2s --metrics-listen "" --output "${DEMO_OUTPUT:-table}" --log-level warn | tee "$work/findings.txt"

echo "==> findings by detector"
awk 'NR>1 {print $4}' "$work/findings.txt" | sort | uniq -c | sort -rn
