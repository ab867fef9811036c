#!/bin/sh
# The model specs a CI run ships, one per line (run from the repository root).
# Every spec when: TORCHSHIP_ALL_MODELS=1 (a manual pipeline run sets it), CodeBuild was started by hand,
# no previous commit is known, or anything outside models/ changed (the toolchain, the Dockerfile or the
# pins change every model's .mar or image). Otherwise only the specs whose models/<name>/ changed.
set -eu
all() { for spec in models/*/model.yaml; do [ -f "$spec" ] && echo "$spec"; done; return 0; }

if [ "${TORCHSHIP_ALL_MODELS:-0}" = 1 ]; then all; exit 0; fi
case "${CODEBUILD_INITIATOR:-codepipeline/}" in codepipeline/*) ;; *) all; exit 0 ;; esac
previous="${TORCHSHIP_PREVIOUS_COMMIT:-}"
[ -n "$previous" ] || previous=$(git rev-parse -q --verify HEAD~1 2>/dev/null || true)
[ -n "$previous" ] || { all; exit 0; }
changed=$(git diff --name-only "$previous" HEAD)
[ -n "$changed" ] || { all; exit 0; }
if printf '%s\n' "$changed" | grep -qv '^models/'; then all; exit 0; fi
printf '%s\n' "$changed" | sed -n 's#^models/\([^/]*\)/.*#\1#p' | sort -u | while read -r name; do
  if [ -f "models/$name/model.yaml" ]; then echo "models/$name/model.yaml"; fi
done
