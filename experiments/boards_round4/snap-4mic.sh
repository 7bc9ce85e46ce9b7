#!/usr/bin/env bash
# issue 28.1 round 4, respeaker-4mic third cycle: snap.sh for the one run R4f. snap-4mic.sh WAIT: wait up to WAIT s
# for the trainer, then bring back what snap.sh brings (without the optimizer state) in $OUT/R4f-.tar (snap.sh
# packs runs in pairs; a lone run's tar keeps the empty second name).
exec bash "$(dirname "$0")/snap.sh" "${1:-0}" R4f
