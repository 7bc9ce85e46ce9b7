#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages edge-msl needs (TTS voices, ffmpeg, ALSA headers, mosquitto,
# the allowed asterisk speech prompts, chromium for the live view's browser test). Skips quickly when everything
# is already there.
set -euo pipefail
PKGS=(espeak-ng flite festival festvox-kallpc16k ffmpeg sox libasound2-dev alsa-utils libasound2-plugins
      mosquitto systemd asterisk-core-sounds-en-g722 asterisk-core-sounds-es-g722 asterisk-core-sounds-fr-g722
      python3-venv python3-dev gcc chromium)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO=sudo; else
    echo "edge-msl: missing system packages: ${missing[*]}" >&2
    echo "edge-msl: run as root, or first: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
else SUDO=; fi
echo "edge-msl: installing system packages: ${missing[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
