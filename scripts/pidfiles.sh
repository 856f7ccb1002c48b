# Sourced by the scripts that start processes in the background and note their pids.

# stop_pidfiles FILE...: stops each process named by a pid file (SIGTERM, then a
# bounded wait for its clean exit) and removes the file.
stop_pidfiles() {
  local f pid
  for f in "$@"; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    if kill "$pid" 2>/dev/null; then
      for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
      done
    fi
    rm -f "$f"
  done
}
