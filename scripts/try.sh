#!/usr/bin/env bash
# Bake a package from this template with default answers and run its demo on a real local Grain.
# Extra arguments are cookiecutter answers, e.g. `bash scripts/try.sh backendless=yes`.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
out="$repo/baked"
rm -rf "$out"
cookiecutter --no-input --output-dir "$out" "$repo" "$@"
package="$(ls "$out")"
cd "$out/$package"
# `python -m` puts this folder on sys.path, and the demo hands it on to the processes it starts:
# nothing is installed into the environment.
python -m "$package.demo"
