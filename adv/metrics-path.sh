#!/bin/bash
# Probe: odd extensions.metrics.prometheus.path values — startup crash? route hijack?
set -u
D=$(mktemp -d)
for p in '/m/:x' '/(.*)' '/metrics*' '/livez' '/_kagami/token' '/metrics/' '/metr ics' ; do
  PORT=$((20000 + RANDOM % 20000))
  cat > $D/c.json <<J
{"distSpecVersion":"1.1.0","storage":{"rootDirectory":"$D/data"},"http":{"address":"127.0.0.1","port":"$PORT"},
 "extensions":{"metrics":{"enable":true,"prometheus":{"path":"$p"}}},"log":{"level":"error"}}
J
  node dist/cli/main.js serve --config $D/c.json >$D/out 2>&1 & PID=$!
  sleep 2.5
  echo "== path $p alive=$(kill -0 $PID 2>/dev/null && echo y || echo n)"
  head -c 400 $D/out; echo
  for u in /m/abc /anything /metricsXYZ /livez /_kagami/token /metrics/ /metrics; do
    echo "  $u -> $(curl -s -o /dev/null -w '%{http_code} %{content_type}' http://127.0.0.1:$PORT$u)"
  done
  kill $PID 2>/dev/null; wait $PID 2>/dev/null
done
rm -rf $D
