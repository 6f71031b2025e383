complete -c uwsgid -l http-socket -d 'Listen for HTTP on ADDR: HOST:PORT, :PORT, [V6]:PORT, a path or unix:PATH, fd://N, or fd://NAME (the sockets systemd passed with that FileDescriptorName=)' -r
complete -c uwsgid -s p -l processes -l workers -d 'Number of worker processes' -r
complete -c uwsgid -l safe-pidfile -d 'Write the master pid here once the listeners and first workers are up' -r -F
complete -c uwsgid -l pidfile -d 'Same as --safe-pidfile (uwsgid never writes a pidfile early)' -r -F
complete -c uwsgid -l worker-reload-mercy -d 'Seconds a worker may take to finish its requests before SIGKILL (more than 0; default 60)' -r
complete -c uwsgid -l snapshot-max-age -d 'With --auto-snapshot: drop the snapshot (stop its workers) this many seconds after it was taken (default: kept until the next reload replaces it)' -r
complete -c uwsgid -l listen -d 'Listen backlog' -r
complete -c uwsgid -l logto -d 'Log to FILE instead of stderr' -r -F
complete -c uwsgid -l log-maxsize -d 'Rotate the --logto file once it passes BYTES: renamed to FILE.EPOCH, a new FILE opened' -r
complete -c uwsgid -l check-static -d 'Serve static files from DIR' -r -F
complete -c uwsgid -l ini -d 'Read options from FILE[:SECTION] ([uwsgi] by default), uWSGI\'s ini language (placeholders, config logic, includes); repeatable; a bare FILE.ini argument is the same' -r -F
complete -c uwsgid -l json -d 'Read options from the SECTION ("uwsgi") object of a JSON file FILE[:SECTION]' -r -F
complete -c uwsgid -l yaml -d 'Read options from the SECTION ("uwsgi") mapping of a YAML file FILE[:SECTION]' -r -F
complete -c uwsgid -l master-fifo -d 'Master FIFO (repeatable; the first is slot 0)' -r -F
complete -c uwsgid -l stats -l stats-server -d 'Stats server on HOST:PORT or a Unix socket path' -r
complete -c uwsgid -l touch-reload -d 'Graceful reload when FILE is touched' -r -F
complete -c uwsgid -l touch-workers-reload -d 'Graceful workers reload when FILE is touched' -r -F
complete -c uwsgid -l touch-chain-reload -d 'Chain reload when FILE is touched' -r -F
complete -c uwsgid -l name -d 'Instance name: its files live in the runtime directory under NAME' -r
complete -c uwsgid -l worker-exec -d 'Run each worker as this program (a command line; listeners as fds 3.., LISTEN_FDS)' -r
complete -c uwsgid -l worker-ready-timeout -d 'Exec workers that never send READY=1 count as ready after SECS' -r
complete -c uwsgid -l worker-start-timeout -d 'A worker not ready SECS after its start is killed and counts as a failed start [default: 60]' -r
complete -c uwsgid -l worker-stop-signal -d 'Signal that asks an exec worker to stop gracefully' -r
complete -c uwsgid -l harakiri -d 'A worker busy in one request for more than SECS is killed by the master (its slot is refilled first)' -r
complete -c uwsgid -l harakiri-graceful-timeout -d 'On harakiri send --harakiri-graceful-signal first and SIGKILL only SECS later' -r
complete -c uwsgid -l harakiri-graceful-signal -d 'The signal of a graceful harakiri [default: TERM]' -r
complete -c uwsgid -l max-requests -d 'Recycle a worker after N requests (replacement first: capacity never drops)' -r
complete -c uwsgid -l max-requests-delta -d 'Worker K recycles after max-requests + K*N requests, so workers do not recycle together' -r
complete -c uwsgid -l reload-on-rss -d 'Recycle a worker whose resident memory exceeds MB (checked every second)' -r
complete -c uwsgid -l reload-on-pss -d 'Recycle a worker whose proportional set size exceeds MB (/proc/PID/smaps_rollup; counts shared pages once)' -r
complete -c uwsgid -l cheaper -d 'Cheaper mode: keep at least N workers, up to --processes under load (0: off)' -r
complete -c uwsgid -l cheaper-initial -d 'Cheaper mode: the workers started at first [default: --cheaper]' -r
complete -c uwsgid -l cheaper-step -d 'Cheaper mode: how many workers to add at a time [default: 1]' -r
complete -c uwsgid -l cheaper-algo -d 'Cheaper mode: add workers when all are busy (spare) or connections wait (backlog) [default: spare]' -r
complete -c uwsgid -l cheaper-overload -d 'Cheaper mode: seconds all workers must be busy (spare) or the queue length (backlog), and seconds of idleness before one is removed [default: 3]' -r
complete -c uwsgid -l min-worker-lifetime -d 'A worker is not recycled for requests or memory before it has run SECS [default: 10]' -r
complete -c uwsgid -l max-worker-lifetime -d 'Recycle a worker after it has run SECS' -r
complete -c uwsgid -l max-worker-lifetime-delta -d 'Worker K recycles after max-worker-lifetime + K*SECS' -r
complete -c uwsgid -l wsgi-file -d 'Run a Python WSGI app from FILE with the bundled runner' -r -F
complete -c uwsgid -l callable -d 'WSGI callable name in --wsgi-file' -r
complete -c uwsgid -l module -l wsgi -d 'Run a Python WSGI app from pkg.mod[:callable] (uWSGI\'s --wsgi names a module too)' -r
complete -c uwsgid -l python -d 'Python interpreter for --wsgi-file/--module (runs the stdlib runner instead of the native worker, which embeds the Python it was built with)' -r
complete -c uwsgid -s H -l home -l virtualenv -d 'Run the Python app in the virtualenv DIR (its site-packages; its interpreter must be the Python the native worker embeds, else give --python DIR/bin/python)' -r -F
complete -c uwsgid -l pythonpath -l python-path -d 'Prepend DIR to the Python path of --wsgi-file/--module apps (repeatable)' -r -F
complete -c uwsgid -l threads -d 'Requests each --wsgi-file/--module worker serves at once (default 8)' -r
complete -c uwsgid -l env -d 'Set NAME=VALUE in the environment of every worker (repeatable)' -r
complete -c uwsgid -l chdir -d 'Working directory of every worker (the master\'s by default)' -r -F
complete -c uwsgid -l daemonize -d 'Detach into the background and log to FILE; returns once the instance serves' -r -F
complete -c uwsgid -l chmod-socket -d 'Mode of the Unix sockets the instance creates, octal (given bare: 666)' -r
complete -c uwsgid -l chown-socket -d 'Owner of the Unix sockets the instance creates: USER[:GROUP] or :GROUP (names or numbers)' -r
complete -c uwsgid -l umask -d 'The process\'s file-creation mask, octal (e.g. 022)' -r
complete -c uwsgid -l reload -d 'Gracefully reload the instance of PIDFILE (SIGHUP through a pidfd) and exit' -r -F
complete -c uwsgid -l stop -d 'Stop the instance of PIDFILE at once (SIGINT, as uWSGI) and exit' -r -F
complete -c uwsgid -l graceful-stop -d 'Stop the instance of PIDFILE gracefully (FIFO \'q\': requests finish) and exit' -r -F
complete -c uwsgid -l brutal-reload -d 'Brutally reload the instance of PIDFILE (FIFO \'R\') and exit' -r -F
complete -c uwsgid -l chain-reload -d 'Chain-reload the instance of PIDFILE, one worker at a time (FIFO \'c\'), and exit' -r -F
complete -c uwsgid -l pause -d 'Pause the instance of PIDFILE (FIFO \'h\'; already paused: no change) and exit' -r -F
complete -c uwsgid -l suspend -d 'Same as --pause' -r -F
complete -c uwsgid -l resume -d 'Resume the instance of PIDFILE (FIFO \'u\'; already running: no change) and exit' -r -F
complete -c uwsgid -s s -l socket -l uwsgi-socket -d 'Listen for the uwsgi protocol (nginx\'s uwsgi_pass) on ADDR: HOST:PORT, :PORT, a path, fd://N or fd://NAME (systemd socket activation)' -r
complete -c uwsgid -l http -d 'Listen for HTTP on ADDR, as --http-socket (uWSGI\'s router option; no router is needed)' -r
complete -c uwsgid -l http11-socket -d 'Listen for HTTP on ADDR, as --http-socket (keep-alive is always on)' -r
complete -c uwsgid -s b -l buffer-size -d 'Largest uwsgi vars block accepted, bytes [default: 4096, at most 65535]; Python workers also bound HTTP heads by it (default 64 KiB)' -r
complete -c uwsgid -l limit-post -d 'Python workers: largest request body, bytes (413 beyond; 0: no limit) [default: no limit]' -r
complete -c uwsgid -l uwsgi-allow -d 'Also accept uwsgi TCP peers from IP or IP/BITS (repeatable; * for any); loopback always' -r
complete -c uwsgid -l uid -d 'After binding (as root), run the master and workers as USER (name or number)' -r
complete -c uwsgid -l gid -d 'After binding (as root), run as GROUP (name or number; default: USER\'s group)' -r
complete -c uwsgid -l static-map -d 'Serve files under URL prefix /URL from DIR (what follows the prefix; repeatable)' -r
complete -c uwsgid -l static-map2 -d 'Serve files under /URL from DIR with the whole URL path appended (repeatable)' -r
complete -c uwsgid -l static-index -d 'File served for a requested directory, tried in order (repeatable; default index.html)' -r
complete -c uwsgid -l static-expires-type -d 'Expires and Cache-Control max-age of static files of type MIME (repeatable)' -r
complete -c uwsgid -l logformat -l log-format -d 'Request log line with uWSGI\'s %(method) %(uri) %(status) %(msecs) %(size)... variables; as --log-format, the values `json` and `text` choose the master log\'s encoding instead' -r
complete -c uwsgid -l chdir2 -d 'Working directory of built-in workers (uWSGI: after the app is loaded)' -r -F
complete -c uwsgid -l procname-prefix -d 'Prefix process names with TEXT (implies --auto-procname)' -r
complete -c uwsgid -l procname-prefix-spaced -d 'Prefix process names with TEXT and a space (implies --auto-procname)' -r
complete -c uwsgid -l procname-append -d 'Append TEXT to process names' -r
complete -c uwsgid -l procname -d 'Name every process NAME' -r
complete -c uwsgid -l procname-master -d 'Name the master NAME' -r
complete -c uwsgid -l cpu-affinity -d 'Pin each worker to N CPUs, round robin over the CPUs the master may use' -r
complete -c uwsgid -l mount -d 'Python app under URL prefix /PREFIX: APP is a file (.py/.wsgi) or pkg.mod[:callable] (repeatable; dispatched by prefix with --manage-script-name)' -r
complete -c uwsgid -l master -d 'Accepted for uWSGI compatibility: uwsgid always runs a master'
complete -c uwsgid -l die-on-term -d 'SIGTERM stops gracefully (requests in flight finish) instead of a brutal reload'
complete -c uwsgid -l auto-snapshot -d 'Keep the previous generation parked after a graceful, workers or chain reload (no CPU, its memory held) so that a rollback (SIGURG, FIFO b) restores it; built-in and native Python workers only'
complete -c uwsgid -l no-defer-accept -d 'Accept TCP connections as soon as they are made, not when their first bytes arrive (TCP_DEFER_ACCEPT is set on TCP listeners by default, as uWSGI does)'
complete -c uwsgid -l log-reopen -d 'Reopen the --logto file at every reload (after logrotate moved it)'
complete -c uwsgid -l demo-routes -d 'Demo routes: GET / (Hello World), GET /sleep?ms=N, GET /pid'
complete -c uwsgid -l strict -d 'A configuration-file key that is no option is an error, not a placeholder'
complete -c uwsgid -l stats-http -d 'Answer stats requests with an HTTP response'
complete -c uwsgid -l vacuum -d 'On exit remove the pidfile (if it still holds our pid), FIFOs and Unix sockets we made'
complete -c uwsgid -l harakiri-verbose -d 'Log the worker\'s request and timings in detail when harakiri fires'
complete -c uwsgid -l enable-threads -d 'Accepted for uWSGI compatibility: the Python runner always runs threads'
complete -c uwsgid -l lazy-apps -d 'Import the Python app in every worker instead of once per generation before forking'
complete -c uwsgid -l no-python-standby -d 'Do not keep the next generation\'s Python interpreter started in standby (it makes a preload reload skip the interpreter\'s start-up, for the memory of one idle interpreter)'
complete -c uwsgid -l check-config -d 'Parse and validate the options, print the result and exit (binds nothing)'
complete -c uwsgid -l wait -d 'With a management option: block until it is done (at most 60 s; exit 20 on timeout)'
complete -c uwsgid -l master-as-root -d 'With --uid/--gid: only the workers drop, the master keeps root'
complete -c uwsgid -s L -l disable-logging -d 'No request log lines (built-in workers)'
complete -c uwsgid -l log-4xx -d 'With --disable-logging, still log requests answered 4xx'
complete -c uwsgid -l log-5xx -d 'With --disable-logging, still log requests answered 5xx'
complete -c uwsgid -l auto-procname -d 'Name processes "uwsgid master (generation G)", "uwsgid worker N (generation G)"'
complete -c uwsgid -l manage-script-name -d 'Pick the --mount app by the longest matching URL prefix, which becomes SCRIPT_NAME'
complete -c uwsgid -s h -l help -d 'Print help'
complete -c uwsgid -s V -l version -d 'Print version'
