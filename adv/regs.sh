# Probe helper: start a distribution registry on PORT with storage in DIR (background).
port=$1; dir=$2; mkdir -p $dir
cat > $dir/config.yml <<EOC
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $dir/data}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$port}
EOC
docker-registry serve $dir/config.yml >$dir/log 2>&1 &
echo $! > $dir/pid
