# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_uwsgictl_global_optspecs
    string join \n pidfile= fifo= stats= ini= name= json h/help V/version
end

function __fish_uwsgictl_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_uwsgictl_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_uwsgictl_using_subcommand
    set -l cmd (__fish_uwsgictl_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c uwsgictl -n "__fish_uwsgictl_needs_command" -l pidfile -d 'The master\'s pidfile (uwsgid or uWSGI); for uwsgid, also enough to find its FIFO and stats' -r -F
complete -c uwsgictl -n "__fish_uwsgictl_needs_command" -l fifo -d 'The master FIFO (--master-fifo)' -r -F
complete -c uwsgictl -n "__fish_uwsgictl_needs_command" -l stats -d 'The stats server: HOST:PORT, a Unix socket path, @ABSTRACT, or http://HOST:PORT for --stats-http' -r
complete -c uwsgictl -n "__fish_uwsgictl_needs_command" -l ini -d 'Read safe-pidfile/pidfile, master-fifo, stats and stats-http from FILE\'s [uwsgi] section (FILE:SECTION for another), read as uwsgid reads it: placeholders, includes, config logic' -r -F
complete -c uwsgictl -n "__fish_uwsgictl_needs_command" -l name -d 'The uwsgid instance NAME in the runtime directory (default: "default")' -r
complete -c uwsgictl -n "__fish_uwsgictl_needs_command" -l json -d 'Print exactly one JSON document on stdout (errors too); progress is never shown'
complete -c uwsgictl -n "__fish_uwsgictl_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c uwsgictl -n "__fish_uwsgictl_needs_command" -s V -l version -d 'Print version'
complete -c uwsgictl -n "__fish_uwsgictl_needs_command" -f -a "reload" -d 'Reload the instance: graceful by default (SIGHUP or FIFO \'r\')'
complete -c uwsgictl -n "__fish_uwsgictl_needs_command" -f -a "stop" -d 'Stop the instance: graceful by default (FIFO \'q\'), --brutal sends SIGINT'
complete -c uwsgictl -n "__fish_uwsgictl_needs_command" -f -a "pause" -d 'Pause: workers stop accepting, connections wait in the backlog. Does nothing if paused'
complete -c uwsgictl -n "__fish_uwsgictl_needs_command" -f -a "resume" -d 'Resume a paused instance. Does nothing if it is not paused'
complete -c uwsgictl -n "__fish_uwsgictl_needs_command" -f -a "rollback" -d 'Roll back (uwsgid): abort a reload under way, back to the generation that serves; else restore the parked snapshot (--auto-snapshot) and retire the current generation'
complete -c uwsgictl -n "__fish_uwsgictl_needs_command" -f -a "stats" -d 'Show the instance and its workers as a table, or the daemon\'s document with --json'
complete -c uwsgictl -n "__fish_uwsgictl_needs_command" -f -a "status" -d 'One line saying whether the instance runs; LSB exit codes (0, 1, 3, 4)'
complete -c uwsgictl -n "__fish_uwsgictl_needs_command" -f -a "signal" -d 'Send a signal from the master\'s signal table (HUP, TERM, INT, QUIT, USR1, USR2, URG, TSTP, WINCH) to the validated master'
complete -c uwsgictl -n "__fish_uwsgictl_needs_command" -f -a "fifo" -d 'Write raw command bytes to the master FIFO (see FIFO COMMANDS in uwsgictl(1))'
complete -c uwsgictl -n "__fish_uwsgictl_needs_command" -f -a "list" -d 'List the uwsgid instances in the runtime directory'
complete -c uwsgictl -n "__fish_uwsgictl_needs_command" -f -a "completions" -d 'Print a shell completion script'
complete -c uwsgictl -n "__fish_uwsgictl_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand reload" -l timeout -d 'Give up waiting after S seconds (exit code 20)' -r
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand reload" -l via -d 'Send a signal or write to the FIFO (default: signal for graceful reloads when the pidfile is known, else FIFO)' -r -f -a "signal\t'A signal through a pidfd (needs the pidfile)'
fifo\t'A byte written to the master FIFO'"
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand reload" -l pidfile -d 'The master\'s pidfile (uwsgid or uWSGI); for uwsgid, also enough to find its FIFO and stats' -r -F
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand reload" -l fifo -d 'The master FIFO (--master-fifo)' -r -F
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand reload" -l stats -d 'The stats server: HOST:PORT, a Unix socket path, @ABSTRACT, or http://HOST:PORT for --stats-http' -r
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand reload" -l ini -d 'Read safe-pidfile/pidfile, master-fifo, stats and stats-http from FILE\'s [uwsgi] section (FILE:SECTION for another), read as uwsgid reads it: placeholders, includes, config logic' -r -F
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand reload" -l name -d 'The uwsgid instance NAME in the runtime directory (default: "default")' -r
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand reload" -l wait -d 'Block until the reload is complete (or failed)'
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand reload" -l brutal -d 'Kill old workers at once instead of letting them finish their requests'
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand reload" -l chain -d 'Replace one worker at a time, each once the previous replacement is ready'
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand reload" -l workers -d 'Replace the workers only; the master keeps running as it is'
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand reload" -l json -d 'Print exactly one JSON document on stdout (errors too); progress is never shown'
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand reload" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand stop" -l timeout -d 'Give up waiting after S seconds (exit code 20)' -r
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand stop" -l via -d 'Send a signal or write to the FIFO (graceful stop is FIFO-only)' -r -f -a "signal\t'A signal through a pidfd (needs the pidfile)'
fifo\t'A byte written to the master FIFO'"
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand stop" -l pidfile -d 'The master\'s pidfile (uwsgid or uWSGI); for uwsgid, also enough to find its FIFO and stats' -r -F
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand stop" -l fifo -d 'The master FIFO (--master-fifo)' -r -F
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand stop" -l stats -d 'The stats server: HOST:PORT, a Unix socket path, @ABSTRACT, or http://HOST:PORT for --stats-http' -r
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand stop" -l ini -d 'Read safe-pidfile/pidfile, master-fifo, stats and stats-http from FILE\'s [uwsgi] section (FILE:SECTION for another), read as uwsgid reads it: placeholders, includes, config logic' -r -F
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand stop" -l name -d 'The uwsgid instance NAME in the runtime directory (default: "default")' -r
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand stop" -l wait -d 'Block until the master has exited'
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand stop" -l brutal -d 'Kill the workers at once (SIGINT, or FIFO \'Q\') instead of letting requests finish'
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand stop" -l json -d 'Print exactly one JSON document on stdout (errors too); progress is never shown'
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand stop" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand pause" -l via -d 'Send a signal or write to the FIFO (default: FIFO when known, else signal)' -r -f -a "signal\t'A signal through a pidfd (needs the pidfile)'
fifo\t'A byte written to the master FIFO'"
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand pause" -l pidfile -d 'The master\'s pidfile (uwsgid or uWSGI); for uwsgid, also enough to find its FIFO and stats' -r -F
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand pause" -l fifo -d 'The master FIFO (--master-fifo)' -r -F
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand pause" -l stats -d 'The stats server: HOST:PORT, a Unix socket path, @ABSTRACT, or http://HOST:PORT for --stats-http' -r
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand pause" -l ini -d 'Read safe-pidfile/pidfile, master-fifo, stats and stats-http from FILE\'s [uwsgi] section (FILE:SECTION for another), read as uwsgid reads it: placeholders, includes, config logic' -r -F
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand pause" -l name -d 'The uwsgid instance NAME in the runtime directory (default: "default")' -r
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand pause" -l json -d 'Print exactly one JSON document on stdout (errors too); progress is never shown'
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand pause" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand resume" -l via -d 'Send a signal or write to the FIFO (default: FIFO when known, else signal)' -r -f -a "signal\t'A signal through a pidfd (needs the pidfile)'
fifo\t'A byte written to the master FIFO'"
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand resume" -l pidfile -d 'The master\'s pidfile (uwsgid or uWSGI); for uwsgid, also enough to find its FIFO and stats' -r -F
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand resume" -l fifo -d 'The master FIFO (--master-fifo)' -r -F
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand resume" -l stats -d 'The stats server: HOST:PORT, a Unix socket path, @ABSTRACT, or http://HOST:PORT for --stats-http' -r
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand resume" -l ini -d 'Read safe-pidfile/pidfile, master-fifo, stats and stats-http from FILE\'s [uwsgi] section (FILE:SECTION for another), read as uwsgid reads it: placeholders, includes, config logic' -r -F
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand resume" -l name -d 'The uwsgid instance NAME in the runtime directory (default: "default")' -r
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand resume" -l json -d 'Print exactly one JSON document on stdout (errors too); progress is never shown'
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand resume" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand rollback" -l timeout -d 'Give up waiting after S seconds (exit code 20)' -r
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand rollback" -l via -d 'Send a signal or write to the FIFO (default: FIFO when known, else signal)' -r -f -a "signal\t'A signal through a pidfd (needs the pidfile)'
fifo\t'A byte written to the master FIFO'"
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand rollback" -l pidfile -d 'The master\'s pidfile (uwsgid or uWSGI); for uwsgid, also enough to find its FIFO and stats' -r -F
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand rollback" -l fifo -d 'The master FIFO (--master-fifo)' -r -F
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand rollback" -l stats -d 'The stats server: HOST:PORT, a Unix socket path, @ABSTRACT, or http://HOST:PORT for --stats-http' -r
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand rollback" -l ini -d 'Read safe-pidfile/pidfile, master-fifo, stats and stats-http from FILE\'s [uwsgi] section (FILE:SECTION for another), read as uwsgid reads it: placeholders, includes, config logic' -r -F
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand rollback" -l name -d 'The uwsgid instance NAME in the runtime directory (default: "default")' -r
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand rollback" -l wait -d 'Block until the rollback is complete: only the restored generation serves (or the reload it aborted is over)'
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand rollback" -l json -d 'Print exactly one JSON document on stdout (errors too); progress is never shown'
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand rollback" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand stats" -l interval -d 'Seconds between refreshes with --watch' -r
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand stats" -l count -d 'Stop after N refreshes with --watch' -r
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand stats" -l pidfile -d 'The master\'s pidfile (uwsgid or uWSGI); for uwsgid, also enough to find its FIFO and stats' -r -F
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand stats" -l fifo -d 'The master FIFO (--master-fifo)' -r -F
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand stats" -l stats -d 'The stats server: HOST:PORT, a Unix socket path, @ABSTRACT, or http://HOST:PORT for --stats-http' -r
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand stats" -l ini -d 'Read safe-pidfile/pidfile, master-fifo, stats and stats-http from FILE\'s [uwsgi] section (FILE:SECTION for another), read as uwsgid reads it: placeholders, includes, config logic' -r -F
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand stats" -l name -d 'The uwsgid instance NAME in the runtime directory (default: "default")' -r
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand stats" -l watch -d 'Refresh in place every --interval seconds until interrupted'
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand stats" -l json -d 'Print exactly one JSON document on stdout (errors too); progress is never shown'
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand stats" -s h -l help -d 'Print help'
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand status" -l pidfile -d 'The master\'s pidfile (uwsgid or uWSGI); for uwsgid, also enough to find its FIFO and stats' -r -F
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand status" -l fifo -d 'The master FIFO (--master-fifo)' -r -F
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand status" -l stats -d 'The stats server: HOST:PORT, a Unix socket path, @ABSTRACT, or http://HOST:PORT for --stats-http' -r
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand status" -l ini -d 'Read safe-pidfile/pidfile, master-fifo, stats and stats-http from FILE\'s [uwsgi] section (FILE:SECTION for another), read as uwsgid reads it: placeholders, includes, config logic' -r -F
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand status" -l name -d 'The uwsgid instance NAME in the runtime directory (default: "default")' -r
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand status" -l json -d 'Print exactly one JSON document on stdout (errors too); progress is never shown'
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand status" -s h -l help -d 'Print help'
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand signal" -l pidfile -d 'The master\'s pidfile (uwsgid or uWSGI); for uwsgid, also enough to find its FIFO and stats' -r -F
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand signal" -l fifo -d 'The master FIFO (--master-fifo)' -r -F
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand signal" -l stats -d 'The stats server: HOST:PORT, a Unix socket path, @ABSTRACT, or http://HOST:PORT for --stats-http' -r
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand signal" -l ini -d 'Read safe-pidfile/pidfile, master-fifo, stats and stats-http from FILE\'s [uwsgi] section (FILE:SECTION for another), read as uwsgid reads it: placeholders, includes, config logic' -r -F
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand signal" -l name -d 'The uwsgid instance NAME in the runtime directory (default: "default")' -r
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand signal" -l force -d 'Send even a signal known to kill a uWSGI 2.0 master (USR2)'
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand signal" -l json -d 'Print exactly one JSON document on stdout (errors too); progress is never shown'
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand signal" -s h -l help -d 'Print help'
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand fifo" -l pidfile -d 'The master\'s pidfile (uwsgid or uWSGI); for uwsgid, also enough to find its FIFO and stats' -r -F
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand fifo" -l fifo -d 'The master FIFO (--master-fifo)' -r -F
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand fifo" -l stats -d 'The stats server: HOST:PORT, a Unix socket path, @ABSTRACT, or http://HOST:PORT for --stats-http' -r
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand fifo" -l ini -d 'Read safe-pidfile/pidfile, master-fifo, stats and stats-http from FILE\'s [uwsgi] section (FILE:SECTION for another), read as uwsgid reads it: placeholders, includes, config logic' -r -F
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand fifo" -l name -d 'The uwsgid instance NAME in the runtime directory (default: "default")' -r
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand fifo" -l force -d 'Write bytes this master does not know'
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand fifo" -l json -d 'Print exactly one JSON document on stdout (errors too); progress is never shown'
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand fifo" -s h -l help -d 'Print help'
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand list" -l pidfile -d 'The master\'s pidfile (uwsgid or uWSGI); for uwsgid, also enough to find its FIFO and stats' -r -F
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand list" -l fifo -d 'The master FIFO (--master-fifo)' -r -F
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand list" -l stats -d 'The stats server: HOST:PORT, a Unix socket path, @ABSTRACT, or http://HOST:PORT for --stats-http' -r
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand list" -l ini -d 'Read safe-pidfile/pidfile, master-fifo, stats and stats-http from FILE\'s [uwsgi] section (FILE:SECTION for another), read as uwsgid reads it: placeholders, includes, config logic' -r -F
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand list" -l name -d 'The uwsgid instance NAME in the runtime directory (default: "default")' -r
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand list" -l json -d 'Print exactly one JSON document on stdout (errors too); progress is never shown'
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand list" -s h -l help -d 'Print help'
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand completions" -l pidfile -d 'The master\'s pidfile (uwsgid or uWSGI); for uwsgid, also enough to find its FIFO and stats' -r -F
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand completions" -l fifo -d 'The master FIFO (--master-fifo)' -r -F
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand completions" -l stats -d 'The stats server: HOST:PORT, a Unix socket path, @ABSTRACT, or http://HOST:PORT for --stats-http' -r
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand completions" -l ini -d 'Read safe-pidfile/pidfile, master-fifo, stats and stats-http from FILE\'s [uwsgi] section (FILE:SECTION for another), read as uwsgid reads it: placeholders, includes, config logic' -r -F
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand completions" -l name -d 'The uwsgid instance NAME in the runtime directory (default: "default")' -r
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand completions" -l json -d 'Print exactly one JSON document on stdout (errors too); progress is never shown'
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand completions" -s h -l help -d 'Print help'
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand help; and not __fish_seen_subcommand_from reload stop pause resume rollback stats status signal fifo list completions help" -f -a "reload" -d 'Reload the instance: graceful by default (SIGHUP or FIFO \'r\')'
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand help; and not __fish_seen_subcommand_from reload stop pause resume rollback stats status signal fifo list completions help" -f -a "stop" -d 'Stop the instance: graceful by default (FIFO \'q\'), --brutal sends SIGINT'
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand help; and not __fish_seen_subcommand_from reload stop pause resume rollback stats status signal fifo list completions help" -f -a "pause" -d 'Pause: workers stop accepting, connections wait in the backlog. Does nothing if paused'
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand help; and not __fish_seen_subcommand_from reload stop pause resume rollback stats status signal fifo list completions help" -f -a "resume" -d 'Resume a paused instance. Does nothing if it is not paused'
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand help; and not __fish_seen_subcommand_from reload stop pause resume rollback stats status signal fifo list completions help" -f -a "rollback" -d 'Roll back (uwsgid): abort a reload under way, back to the generation that serves; else restore the parked snapshot (--auto-snapshot) and retire the current generation'
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand help; and not __fish_seen_subcommand_from reload stop pause resume rollback stats status signal fifo list completions help" -f -a "stats" -d 'Show the instance and its workers as a table, or the daemon\'s document with --json'
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand help; and not __fish_seen_subcommand_from reload stop pause resume rollback stats status signal fifo list completions help" -f -a "status" -d 'One line saying whether the instance runs; LSB exit codes (0, 1, 3, 4)'
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand help; and not __fish_seen_subcommand_from reload stop pause resume rollback stats status signal fifo list completions help" -f -a "signal" -d 'Send a signal from the master\'s signal table (HUP, TERM, INT, QUIT, USR1, USR2, URG, TSTP, WINCH) to the validated master'
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand help; and not __fish_seen_subcommand_from reload stop pause resume rollback stats status signal fifo list completions help" -f -a "fifo" -d 'Write raw command bytes to the master FIFO (see FIFO COMMANDS in uwsgictl(1))'
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand help; and not __fish_seen_subcommand_from reload stop pause resume rollback stats status signal fifo list completions help" -f -a "list" -d 'List the uwsgid instances in the runtime directory'
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand help; and not __fish_seen_subcommand_from reload stop pause resume rollback stats status signal fifo list completions help" -f -a "completions" -d 'Print a shell completion script'
complete -c uwsgictl -n "__fish_uwsgictl_using_subcommand help; and not __fish_seen_subcommand_from reload stop pause resume rollback stats status signal fifo list completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
