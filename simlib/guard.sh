# Runs "$@" (a program the kit started) and stops it when stdin ends; see simlib/guard.py.
# stdin is a pipe whose only writer is the owner: it ends when the owner closes it to stop
# the program, or when the owner dies, even by SIGKILL. Exits with the program's status.
exec 3<&0 </dev/null
"$@" 3<&- &
program=$!
{ while read -r _ <&3; do :; done; kill -TERM "$program" 2>/dev/null; } &
watch=$!
exec 3<&-
wait "$program"
status=$?
kill "$watch" 2>/dev/null
exit "$status"
