#!/bin/bash
# Probe: the HEALTHCHECK follows PID 1's --config (a config at another path, on another port).
set -u
D=$(mktemp -d); PORT=$((20000 + RANDOM % 20000))
cat > $D/elsewhere.json <<J
{"distSpecVersion":"1.1.0","storage":{"rootDirectory":"$D/data"},"http":{"address":"0.0.0.0","port":"$PORT"},"log":{"level":"error"}}
J
unshare --fork --pid --mount-proc node $PWD/dist/cli/main.js serve --config $D/elsewhere.json >$D/out 2>&1 &
U=$!
for i in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:$PORT/livez && break; sleep 0.2; done
NODE=$(pgrep -P $U | head -1)
echo "pid1 cmdline in ns: $(nsenter -t $NODE -p -m cat /proc/1/cmdline | tr '\0' ' ')"
nsenter -t $NODE -p -m node $PWD/dist/cli/healthcheck.js; echo "healthcheck exit=$?"
kill $NODE; wait $U 2>/dev/null; rm -rf $D
