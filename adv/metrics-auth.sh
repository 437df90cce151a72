#!/bin/bash
# Probe: odd credentials on /metrics (bearer garbage, malformed basic, huge header) → 401, never 500.
set -u
D=$(mktemp -d); PORT=$((20000 + RANDOM % 20000))
htpasswd -Bbc $D/htpasswd alice pw >/dev/null 2>&1
cat > $D/c.json <<J
{"distSpecVersion":"1.1.0","storage":{"rootDirectory":"$D/data"},"http":{"address":"127.0.0.1","port":"$PORT",
 "auth":{"htpasswd":{"path":"$D/htpasswd"}},"accessControl":{"metrics":{"users":["alice"]},"repositories":{"**":{"anonymousPolicy":["read"]}}}},
 "extensions":{"metrics":{"enable":true}},"log":{"level":"error"}}
J
node dist/cli/main.js serve --config $D/c.json >$D/out 2>&1 & PID=$!
for i in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:$PORT/livez && break; sleep 0.2; done
for h in "Authorization: Bearer garbage" "Authorization: Basic !!!" "Authorization: Basic $(printf 'alice' | base64)" "Authorization: Basic $(printf 'alice:pw' | base64)" "Authorization: Negotiate xyz" "Authorization: Basic $(printf ':' | base64)"; do
  echo "$h -> $(curl -s -o /dev/null -w '%{http_code}' -H "$h" http://127.0.0.1:$PORT/metrics)"
done
echo "HEAD alice -> $(curl -s -o /dev/null -w '%{http_code}' -I -u alice:pw http://127.0.0.1:$PORT/metrics)"
echo "readyz anon -> $(curl -s http://127.0.0.1:$PORT/readyz)"
grep -i '"level":"error"' $D/out | head -3
kill $PID; wait $PID 2>/dev/null; rm -rf $D
