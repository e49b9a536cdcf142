#!/usr/bin/env bash
# Installs the system packages Glyphoxa's build and tests need, only when they
# are missing. Safe to run again and again (CI runs it on every build).
#
#   cmake               builds the bundled libopus (and llama.cpp for local LLMs)
#   pkg-config          lets -sys crates find system libraries
#   clang, libclang-dev bindgen for llama.cpp's bindings (local LLM engine)
#   espeak-ng           the offline text-to-speech engine and test-fixture voice
#
# Then installs the offline models (scripts/models.sh: Whisper tiny.en and
# SmolLM2, about 175 MB, downloaded once and kept in the models directory;
# GLYPHOXA_SKIP_MODELS=1 skips them).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

# command → Debian package that provides it
declare -A needs=(
  [cmake]=cmake
  [pkg-config]=pkg-config
  [espeak-ng]=espeak-ng
  [clang]=clang
)
# Debian packages that install no command of their own name
libs=(libclang-dev)

missing=()
for cmd in "${!needs[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${needs[$cmd]}")
done
for pkg in "${libs[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# The model installer downloads with pip.
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all system packages present"
else
  echo "setup: installing ${missing[*]}"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "setup: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
  echo "setup: done"
fi

bash "$here/models.sh"
