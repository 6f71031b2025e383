_uwsgid() {
    local i cur prev opts cmd
    COMPREPLY=()
    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
        cur="$2"
    else
        cur="${COMP_WORDS[COMP_CWORD]}"
    fi
    prev="$3"
    cmd=""
    opts=""

    for i in "${COMP_WORDS[@]:0:COMP_CWORD}"
    do
        case "${cmd},${i}" in
            ",$1")
                cmd="uwsgid"
                ;;
            *)
                ;;
        esac
    done

    case "${cmd}" in
        uwsgid)
            opts="-p -H -s -b -L -h -V --http-socket --workers --processes --master --safe-pidfile --pidfile --die-on-term --worker-reload-mercy --auto-snapshot --snapshot-max-age --listen --no-defer-accept --logto --log-reopen --log-maxsize --check-static --demo-routes --ini --json --yaml --strict --master-fifo --stats-server --stats --stats-http --touch-reload --touch-workers-reload --touch-chain-reload --vacuum --name --worker-exec --worker-ready-timeout --worker-start-timeout --worker-stop-signal --harakiri --harakiri-verbose --harakiri-graceful-timeout --harakiri-graceful-signal --max-requests --max-requests-delta --reload-on-rss --reload-on-pss --cheaper --cheaper-initial --cheaper-step --cheaper-algo --cheaper-overload --min-worker-lifetime --max-worker-lifetime --max-worker-lifetime-delta --wsgi-file --callable --wsgi --module --python --virtualenv --home --enable-threads --lazy-apps --no-python-standby --python-path --pythonpath --threads --env --chdir --daemonize --check-config --chmod-socket --chown-socket --umask --reload --stop --graceful-stop --brutal-reload --chain-reload --pause --suspend --resume --wait --uwsgi-socket --socket --http --http11-socket --buffer-size --limit-post --uwsgi-allow --uid --gid --master-as-root --static-map --static-map2 --static-index --static-expires-type --disable-logging --log-4xx --log-5xx --log-format --logformat --chdir2 --auto-procname --procname-prefix --procname-prefix-spaced --procname-append --procname --procname-master --cpu-affinity --mount --manage-script-name --help --version"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 1 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --http-socket)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --processes)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --workers)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                -p)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --safe-pidfile)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --pidfile)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --worker-reload-mercy)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --snapshot-max-age)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --listen)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --logto)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --log-maxsize)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --check-static)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --ini)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --json)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --yaml)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --master-fifo)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --stats)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --stats-server)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --touch-reload)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --touch-workers-reload)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --touch-chain-reload)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --name)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --worker-exec)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --worker-ready-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --worker-start-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --worker-stop-signal)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --harakiri)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --harakiri-graceful-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --harakiri-graceful-signal)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --max-requests)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --max-requests-delta)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --reload-on-rss)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --reload-on-pss)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --cheaper)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --cheaper-initial)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --cheaper-step)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --cheaper-algo)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --cheaper-overload)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --min-worker-lifetime)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --max-worker-lifetime)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --max-worker-lifetime-delta)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --wsgi-file)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --callable)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --module)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --wsgi)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --python)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --home)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --virtualenv)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                -H)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --pythonpath)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --python-path)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --threads)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --env)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --chdir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --daemonize)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --chmod-socket)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --chown-socket)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --umask)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --reload)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --stop)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --graceful-stop)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --brutal-reload)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --chain-reload)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --pause)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --suspend)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --resume)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --socket)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --uwsgi-socket)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                -s)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --http)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --http11-socket)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --buffer-size)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                -b)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --limit-post)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --uwsgi-allow)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --uid)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --gid)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --static-map)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --static-map2)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --static-index)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --static-expires-type)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --logformat)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --log-format)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --chdir2)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --procname-prefix)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --procname-prefix-spaced)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --procname-append)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --procname)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --procname-master)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --cpu-affinity)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --mount)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
    esac
}

if [[ "${BASH_VERSINFO[0]}" -eq 4 && "${BASH_VERSINFO[1]}" -ge 4 || "${BASH_VERSINFO[0]}" -gt 4 ]]; then
    complete -F _uwsgid -o nosort -o bashdefault -o default uwsgid
else
    complete -F _uwsgid -o bashdefault -o default uwsgid
fi
