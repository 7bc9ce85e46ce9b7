#!/bin/sh
# Installs the edge-msl systemd unit and a default configuration:
#   /etc/systemd/system/edge-msl.service  (ExecStart pointed at your edge-msl)
#   /etc/edge-msl/config.toml             (only if absent; otherwise config.toml.dist next to it)
# usage: sudo systemd/install.sh [--bin /opt/edge-msl/bin/edge-msl] [--root DIR]
#   --bin   the edge-msl executable (default: the one on PATH); must be an absolute path
#   --root  install under DIR instead of / (packaging, tests); systemctl is not called then
set -eu

here=$(cd "$(dirname "$0")" && pwd)
bin=""
root=""
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin="$2"; shift 2 ;;
    --root) root="$2"; shift 2 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1; see --help" >&2; exit 2 ;;
  esac
done

[ -n "$bin" ] || bin=$(command -v edge-msl || true)
case "$bin" in
  /*) ;;
  "") echo "install.sh: edge-msl is not on PATH; install it (e.g. python3 -m venv /opt/edge-msl &&" \
           "/opt/edge-msl/bin/pip install 'edge-msl[alsa,mqtt]') and pass --bin /opt/edge-msl/bin/edge-msl" >&2
      exit 1 ;;
  *) echo "install.sh: --bin $bin must be an absolute path" >&2; exit 1 ;;
esac
if [ ! -x "$bin" ]; then
  echo "install.sh: $bin is not an executable; pass --bin with the path of edge-msl" >&2
  exit 1
fi

unit_dir="$root/etc/systemd/system"
conf_dir="$root/etc/edge-msl"
install -d -m 0755 "$unit_dir" "$conf_dir"

# '|' cannot appear in a path we accept below, so it is a safe sed delimiter
case "$bin" in *'|'*|*'&'*) echo "install.sh: --bin $bin contains '|' or '&'" >&2; exit 1 ;; esac
sed "s|^ExecStart=/usr/local/bin/edge-msl |ExecStart=$bin |" "$here/edge-msl.service" > "$unit_dir/edge-msl.service.new"
chmod 0644 "$unit_dir/edge-msl.service.new"
mv "$unit_dir/edge-msl.service.new" "$unit_dir/edge-msl.service"
echo "installed $unit_dir/edge-msl.service (ExecStart=$bin run --config /etc/edge-msl/config.toml)"

if [ -e "$conf_dir/config.toml" ]; then
  install -m 0644 "$here/config.toml" "$conf_dir/config.toml.dist"
  echo "kept your $conf_dir/config.toml; the shipped default is in $conf_dir/config.toml.dist"
else
  install -m 0644 "$here/config.toml" "$conf_dir/config.toml"
  echo "installed $conf_dir/config.toml (edit [device] name and [mqtt] host)"
fi

if ! check=$("$bin" run --config "$conf_dir/config.toml" --check 2>&1 >/dev/null); then
  printf '%s\n' "$check" >&2
  echo "install.sh: warning: $conf_dir/config.toml does not pass 'edge-msl run --check' (see above)" >&2
fi

if [ -z "$root" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  echo "next: systemctl enable --now edge-msl && journalctl -u edge-msl -f"
fi
