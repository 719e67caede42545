#!/usr/bin/env bash
# Installs what the integration tests talk to: Debian packages (when missing) and PyPI wheels
# into the project's virtualenv. Idempotent; `make test` runs it. Needs root for apt-get
# (CI runs as root); without root, missing Debian packages are reported and tests that need
# them skip locally (and fail in CI).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"

# Debian packages the integration tests need: "command package" pairs.
DEBIAN_NEEDS=(
  "logger bsdutils"
  "rsyslogd rsyslog"
  "prometheus prometheus"
  "victoria-metrics victoria-metrics"
  "promtool prometheus"
  "prometheus-alertmanager prometheus-alertmanager"
)

missing=()
for pair in "${DEBIAN_NEEDS[@]}"; do
  cmd="${pair%% *}"; pkg="${pair##* }"
  if ! command -v "$cmd" >/dev/null 2>&1 && ! [ -x "/usr/sbin/$cmd" ]; then
    missing+=("$pkg")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "install-peers: installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "install-peers: missing Debian packages (install them as root): ${missing[*]}" >&2
  fi
fi

# PyPI wheels that bring peers (brokers, servers) into the virtualenv.
PYPI_PEERS=(
  "osmem-server==0.1.6"  # in-memory OpenSearch-compatible server (elasticsearch exporter tests)
)
if [ "${#PYPI_PEERS[@]}" -gt 0 ]; then
  "$VENV/bin/python" -m pip install --quiet "${PYPI_PEERS[@]}"
fi
