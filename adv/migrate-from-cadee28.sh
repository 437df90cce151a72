#!/bin/bash
# Probe: a store written by cadee28 (unversioned schema), opened by this build; then a downgrade.
# Needs /tmp/adv15-old = git worktree of cadee28, built.
set -u
D=$(mktemp -d); PORT=$((20000 + RANDOM % 20000))
cat > $D/c.json <<J
{"distSpecVersion":"1.1.0","storage":{"rootDirectory":"$D/data"},"http":{"address":"127.0.0.1","port":"$PORT"},"log":{"level":"error"}}
J
mkdir -p $D/img && cd $D/img && printf 'hello' > layer && tar cf l.tar layer && cd - >/dev/null
run() { node $1 serve --config $D/c.json >>$D/out 2>&1 & echo $!; }
P=$(run /tmp/adv15-old/dist/cli/main.js); sleep 2
skopeo copy --dest-tls-verify=false --quiet docker-archive:/dev/null docker://127.0.0.1:$PORT/x:y 2>/dev/null
# Push a minimal OCI image with curl.
cfg='{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
cd=$(printf '%s' "$cfg" | sha256sum | cut -d' ' -f1)
curl -s -o /dev/null -w 'cfg %{http_code}\n' -X POST -H 'Content-Type: application/octet-stream' --data-binary "$cfg" "http://127.0.0.1:$PORT/v2/old/app/blobs/uploads/?digest=sha256:$cd"
m="{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"sha256:$cd\",\"size\":${#cfg}},\"layers\":[]}"
curl -s -o /dev/null -w 'manifest %{http_code}\n' -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary "$m" "http://127.0.0.1:$PORT/v2/old/app/manifests/v1"
kill $P; wait $P 2>/dev/null
echo "user_version before: $(node -e "const D=require('/work/wt-adv15/node_modules/better-sqlite3');const d=new D('$D/data/kagami.db');console.log(d.pragma('user_version',{simple:true}))")"
P=$(run /work/wt-adv15/dist/cli/main.js); sleep 4
echo "log of the new build:"; tail -c 1500 $D/out
echo "new: manifest $(curl -s -o /dev/null -w '%{http_code}' -H 'Accept: application/vnd.oci.image.manifest.v1+json' http://127.0.0.1:$PORT/v2/old/app/manifests/v1) tags $(curl -s http://127.0.0.1:$PORT/v2/old/app/tags/list) readyz $(curl -s http://127.0.0.1:$PORT/readyz)"
kill $P; wait $P 2>/dev/null
echo "user_version after: $(node -e "const D=require('/work/wt-adv15/node_modules/better-sqlite3');const d=new D('$D/data/kagami.db');console.log(d.pragma('user_version',{simple:true}))")"
echo "--- downgrade: old build on the migrated store"
timeout 5 node /tmp/adv15-old/dist/cli/main.js serve --config $D/c.json 2>&1 | head -c 600; echo " exit=$?"
echo "--- a newer schema than this build knows"
node -e "const D=require('/work/wt-adv15/node_modules/better-sqlite3');const d=new D('$D/data/kagami.db');d.pragma('user_version = 99')"
timeout 5 node /work/wt-adv15/dist/cli/main.js serve --config $D/c.json 2>&1 | head -c 800; echo " exit=${PIPESTATUS[0]}"
rm -rf $D
