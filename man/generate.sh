#!/usr/bin/env bash
# Regenerate man/jfr.1 (or the file given) from the argument parser (needs argparse-manpage).
set -euo pipefail
cd "$(dirname "$0")/.."
argparse-manpage --module jfr_lib.cli --function build_parser --prog jfr --project-name jfr \
  --version "$(python -c 'import jfr_lib; print(jfr_lib.__version__)')" \
  --description "run jobflow workflows on workstations, SSH hosts and HPC clusters" \
  --manual-title "jfr manual" --url "https://pypi.org/project/jfr/" \
  --include man/jfr.include --output "${1:-man/jfr.1}"
