# Runs "$@" (a program the kit started) and stops it when stdin ends; see simlib/guard.py.
# stdin is a pipe whose only writer is the owner: it ends when the owner closes it to stop
# the program, or when the owner dies, even by SIGKILL. With "--rm DIR" first, DIR (the
# program's private folder) is removed too once both the pipe and the program have ended,
# whichever ends last. Exits with the program's status.
dir=
if [ "$1" = --rm ]; then dir=$2; shift 2; fi
exec 3<&0 </dev/null
"$@" 3<&- &
program=$!
# The watcher. With a folder, it outlives the program until the pipe ends (a folder such as
# nginx's access log is read after a stop), holding none of the owner's output pipes.
{
    while read -r _ <&3; do :; done
    if [ -n "$dir" ]; then
        : > "$dir/.simlib-owner-gone"
        kill -TERM "$program" || rm -rf "$dir"  # the program had ended: nobody else removes it
    else
        kill -TERM "$program"
    fi
} >/dev/null 2>&1 &
watch=$!
exec 3<&-
wait "$program"
status=$?
if [ -z "$dir" ]; then
    kill "$watch" 2>/dev/null
elif [ -e "$dir/.simlib-owner-gone" ]; then
    rm -rf "$dir"
fi
exit "$status"
