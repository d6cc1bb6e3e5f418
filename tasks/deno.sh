#!/bin/sh
# Runs Deno with the arguments given, as the very process `deno task` started: `deno task` forwards
# Ctrl-C and SIGTERM to its children and waits for them, but a task command spelled `deno …`
# resolves to the npm package's Node wrapper (bin.cjs), which runs Deno in a blocking child and
# forwards nothing, so the trainer would never see the signal. This script execs the binary that
# runs the task (its parent, read from /proc), else the first `deno` on PATH outside node_modules.
exe=$(readlink "/proc/$PPID/exe" 2>/dev/null)
case "$exe" in
*/deno | */deno.exe) exec "$exe" "$@" ;;
esac
IFS=:
for d in $PATH; do
  case "$d" in */node_modules/*) continue ;; esac
  [ -x "$d/deno" ] && exec "$d/deno" "$@"
done
echo "tasks/deno.sh: no deno binary found (parent: ${exe:-unknown})" >&2
exit 127
