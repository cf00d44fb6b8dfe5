#!/bin/bash
# A Sky Port job: reads a staged input, uses the job environment, writes an output that is
# staged back. Submit with:  skyport submit --follow examples/hello/job.sh
#SKYPORT --job-name=hello
#SKYPORT --nodes=1 --cpus-per-task=2 --mem=256M --time=00:05:00
#SKYPORT --input=examples/hello/words.txt:words.txt
#SKYPORT --output=report.txt
set -euo pipefail

echo "job $SKYPORT_JOB_ID on $SKYPORT_NUM_NODES node(s): $SKYPORT_NODELIST (rank $SKYPORT_NODE_RANK)"
echo "OMP_NUM_THREADS=$OMP_NUM_THREADS, restart count $SKYPORT_RESTART_COUNT"
echo "hostfile:"; cat "$SKYPORT_HOSTFILE"

words=$(wc -w < words.txt)
sorted=$(tr -s '[:space:]' '\n' < words.txt | sort | uniq -c | sort -rn | head -3)
for step in 1 2 3; do echo "working... step $step/3"; sleep 0.3; done

{
  echo "Sky Port job $SKYPORT_JOB_ID"
  echo "input words: $words"
  echo "most frequent:"
  echo "$sorted"
} > report.txt
echo "wrote report.txt ($words words counted)"
