#!/usr/bin/env bash
# One entry point. Sets up .venv from requirements.txt (again only when that file changes),
# then runs a stage:
#   bash run.sh [train] [--data DIR] [--config NAME|FILE] [--name RUN] [key=value ...]   the whole job
#   bash run.sh test [pytest args]                                               the test suite
#   bash run.sh speed [--device cpu|cuda] [--images N] [key=value ...]           the speed benchmark
#   bash run.sh predict --run RUN [--out FILE] [--engine auto|torch|onnx] PATH... classify any photos
#   bash run.sh export --run RUN                                                 the ensemble as ONNX
#   bash run.sh audit --run RUN [--noise-log FILE]                               suspected mislabels
#   bash run.sh gallery --run RUN                                                the error-analysis page
#   bash run.sh compare RUN_A RUN_B                                              the same numbers?
#   bash run.sh extra --from DIR [--preview 24] [--out FILE.png]                 outside photos with drawn masks
#   bash run.sh background [--preview 12] [--methods grabcut,selfie] [--out FILE]  the photos without backgrounds
#   bash run.sh blend --runs A[,B...] [--decision bias] [--name N]              blend runs, decide for macro-F1
#   bash run.sh bench [--protocol cpu|gpu] [--recipes seed,recommended]          recipes compared
#   bash run.sh tune [--space NAME|FILE] [--trials N] [--jobs N] [--storage URL]  search a recipe (Optuna)
#   bash run.sh weights MODEL... [--out DIR]                                     fetch ImageNet weights as files
#   bash run.sh gpucheck [--out DIR] [--only CHECKS]                             the GPU path end to end
set -euo pipefail
# the folder the user stands in: paths they type are taken from there (src/core/config.py: user_path)
export MASK_CALLER_DIR="${MASK_CALLER_DIR:-$PWD}"
cd "$(dirname "$0")"

VENV=.venv
PYTHON=${PYTHON:-python3}

setup() {
    local want have
    want=$(cat requirements.txt requirements-nodeps.txt | sha256sum | cut -d' ' -f1)
    have=$(cat "$VENV/.requirements.sha256" 2>/dev/null || true)
    if [[ -x "$VENV/bin/python" && "$want" == "$have" ]]; then
        return
    fi
    echo "setting up $VENV from requirements.txt (first run: several minutes) ..." >&2
    [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.txt
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-nodeps.txt
    echo "$want" > "$VENV/.requirements.sha256"
}

# The gallery's tests drive a real browser: Debian's chromium, installed here once where this
# user may (root with apt-get); elsewhere those tests are skipped and say why.
browser() {
    if [[ -n "${CHROMIUM:-}" ]] || command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
        return
    fi
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "installing Debian's chromium for the browser tests (once; log in $VENV/chromium-install.log) ..." >&2
        { DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium \
          || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }; } \
          > "$VENV/chromium-install.log" 2>&1 \
          || echo "note: chromium could not be installed; the browser tests will be skipped" >&2
    fi
}

setup
PY="$VENV/bin/python"
case "${1:-}" in
    test)
        shift
        browser
        exec "$PY" -m pytest -q tests "$@"
        ;;
    train|predict|export|audit|gallery|compare|extra|background|blend|bench|tune|speed|weights|gpucheck)
        # each stage is one thin module, src/stages/<stage>.py (the list: src/stages/__init__.py)
        stage=$1
        shift
        exec "$PY" -m "src.stages.$stage" "$@"
        ;;
    *)
        exec "$PY" -m src.stages.train "$@"
        ;;
esac
