#!/usr/bin/perl
# A Perl Gearman::Client submitting one job, driven by arguments; prints one JSON report.
#   client.pl HOST:PORT normal FUNCTION PAYLOAD      -> {"result": base64, "failed": 0|1}
#   client.pl HOST:PORT background FUNCTION PAYLOAD  -> {"handle": "H:..."}
#   client.pl HOST:PORT status HANDLE                 -> {"known": .., "running": .., ...}
use strict;
use warnings;
use Gearman::Client;
use JSON::PP;
use MIME::Base64;

my ($server, $action, @rest) = @ARGV;
my $client = Gearman::Client->new(job_servers => [$server]);
my $json = JSON::PP->new->canonical;
my $report;
if ($action eq 'normal') {
    my ($function, $payload) = @rest;
    my $failed = 0;
    my $result = $client->do_task($function, $payload, {
        timeout => 10,
        on_fail => sub { $failed = 1 },
    });
    $report = {
        result => defined $result ? encode_base64($$result, '') : undef,
        failed => $failed,
    };
} elsif ($action eq 'background') {
    my ($function, $payload) = @rest;
    $report = { handle => $client->dispatch_background($function, $payload) };
} elsif ($action eq 'status') {
    my $status = $client->get_status($rest[0]);
    $report = {
        known => $status->known ? 1 : 0,
        running => $status->running ? 1 : 0,
        percent => $status->percent,
    };
} else {
    die "unknown action $action\n";
}
print $json->encode($report), "\n";
