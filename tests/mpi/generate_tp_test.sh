#!/usr/bin/env bash
# graft generate under mpirun with the layout from --set: the same tokens as one process.
#   generate_tp_test.sh MPIRUN GRAFT HF_DIR [mpirun flags ...]
set -eu
mpirun="$1" graft="$2" dir="$3"
shift 3
args=(generate --hf "$dir" --prompt-ids 1,5,7,2 --max-new-tokens 12)
one=$("$graft" "${args[@]}")
two=$("$mpirun" "$@" -np 2 "$graft" "${args[@]}" --set parallel.tp=2)
echo "one process: $one"
echo "tp2:         $two"
[ -n "$one" ] && [ "$one" = "$two" ]
