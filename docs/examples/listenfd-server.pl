#!/usr/bin/env perl
# A minimal uwsgid exec worker in Perl (core modules only): serves HTTP on every listener
# passed by the systemd protocol, says READY=1 on NOTIFY_SOCKET, and on SIGTERM stops
# accepting, finishes the request in hand and exits 0.
#
#   uwsgid --http-socket :8000 --processes 2 --worker-exec 'perl listenfd-server.pl'
use strict;
use warnings;
use IO::Select;
use Socket qw(AF_UNIX SOCK_DGRAM pack_sockaddr_un);

my $pid = $ENV{LISTEN_PID} // '';
die "listenfd-server: LISTEN_PID=$pid is not my pid $$; run me under uwsgid\n" if $pid ne $$;
my $count = $ENV{LISTEN_FDS} // '';
die "listenfd-server: LISTEN_FDS=$count: no listeners\n" unless $count =~ /^[1-9][0-9]*$/;
my @names = split /:/, ($ENV{LISTEN_FDNAMES} // '');
# Taken once: programs this one starts must not believe the fds are theirs.
delete @ENV{qw(LISTEN_PID LISTEN_FDS LISTEN_FDNAMES)};

my (%name_of, @listeners);
for my $i (0 .. $count - 1) {
    my $fd = 3 + $i;
    open(my $listener, '+<&=', $fd) or die "listenfd-server: fd $fd: $!\n";
    $name_of{fileno $listener} = $names[$i] // "fd$fd";
    push @listeners, $listener;
}

# sd_notify: one datagram; "@name" means the abstract namespace.
sub notify {
    my ($message) = @_;
    my $address = $ENV{NOTIFY_SOCKET} or return;
    $address =~ s/^@/\0/;
    socket(my $sock, AF_UNIX, SOCK_DGRAM, 0) or return warn "notify: socket: $!\n";
    send($sock, $message, 0, pack_sockaddr_un($address)) or warn "notify: send: $!\n";
}

my $stopping = 0;
$SIG{TERM} = $SIG{HUP} = sub { $stopping = 1 };

sub serve {
    my ($client, $listener_name) = @_;
    my $head = '';
    while ($head !~ /\r?\n\r?\n/) {
        my $got = sysread($client, $head, 4096, length $head);
        next if !defined $got && $!{EINTR};    # SIGTERM while reading: finish this request
        return unless $got;    # closed, or an error
        return if length $head > 65536;
    }
    my ($method, $target) = $head =~ m{^(\S+) (\S+) HTTP/1\.[01]\r?\n}
        or return print {$client} "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                                 . "Connection: close\r\n\r\n";
    my $body = "Hello from Perl, pid $$, listener $listener_name: $method $target\n";
    print {$client} "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                  . "Content-Length: " . length($body) . "\r\nConnection: close\r\n\r\n$body";
}

my $select = IO::Select->new(@listeners);
notify("READY=1\nSTATUS=perl example serving " . join(', ', values %name_of));
until ($stopping) {
    for my $listener ($select->can_read(1)) {    # wakes at least once a second to see $stopping
        # The listener is shared with other workers: another may have taken the connection.
        my $peer = accept(my $client, $listener) or next;
        $client->autoflush(1);
        serve($client, $name_of{fileno $listener});
        close $client;
    }
}
notify("STOPPING=1");
exit 0;
