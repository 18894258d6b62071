#!/usr/bin/env bash
# System packages the course uses, from Debian's archive (never a browser or data download of our own):
#   dataset-fashion-mnist  Fashion-MNIST as IDX files in /usr/share/datasets/fashion-mnist
#   chromium               the headless browser the site test drives
# Without apt (macOS, Colab without root...) it says what is missing and carries on: the course then
# falls back to scikit-learn's digits, and the browser test is reported as not runnable.
set -uo pipefail
need=()
[ -d /usr/share/datasets/fashion-mnist ] || need+=(dataset-fashion-mnist)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ ${#need[@]} -eq 0 ] && { echo "system packages: all present"; exit 0; }
if ! command -v apt-get >/dev/null 2>&1; then
  echo "system packages: no apt-get here; missing: ${need[*]} (see README, 'Without Debian')"; exit 0
fi
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "system packages: installing ${need[*]}"
$SUDO apt-get update -qq || true
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
  || { echo "system packages: apt-get install failed for ${need[*]}" >&2; exit 1; }
