# shellcheck shell=bash
# Sourced by deploy/services.sh and deploy/opensearch/run.sh. Linux's autogroup scheduling gives every session
# (each process started with setsid) one equal share of the CPU, however many threads it runs; the session's
# nice value sets its weight (nice -10: about nine shares). Lowering it needs CAP_SYS_NICE (root). A process in
# a cgroup of its own (a container, a systemd unit, a CI runner) reads an empty autogroup file: the scheduler
# weighs its cgroup instead (compose: cpu_shares), and nothing is set.
set_cpu_weight() { # pid nice; says what it did (nothing when there was nothing to do)
  local file=/proc/$1/autogroup
  [ "$2" != 0 ] && [ -n "$(cat "$file" 2>/dev/null)" ] || return 0
  if (echo "$2" >"$file") 2>/dev/null; then echo "CPU weight: autogroup nice $2"
  else echo "note: could not set its autogroup nice to $2 (needs CAP_SYS_NICE); it keeps one session's share"; fi
}
