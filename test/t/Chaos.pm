# Chaos.pm: the machinery shared by the chaos runs (500_chaos_embedded.pl,
# 510_chaos_sqs.pl): concurrent submitting clients that survive crashes and
# record, client-side, which submits answered OK; a loop that kills a random
# payment worker with kill -9 every few seconds and the postmaster at two
# chosen points; and the checks made from outside once the drain is over.
#
# A client is a psql process reading a script of submits; when a crash cuts
# its connection psql exits, and the client starts again with every payment
# not yet acknowledged (resubmitting after an ambiguous failure is what a
# real client does, and is safe: storing is idempotent).  Only a line
# "ACK <paymentId> OK" printed by psql counts as accepted: psql prints a
# result only once the whole answer, CommandComplete included, arrived, and
# the server sends that after its commit.
package Chaos;

use strict;
use warnings;

use Carp;
use POSIX qw(WNOHANG);
use Time::HiRes qw(time usleep);
use Test::More;

use PostgreSQL::Test::Utils;

our $USER_ID = '0fa8ca85-d50d-44f9-8a00-5ad67a6d29e4';

# a uuid v4 from Perl's (seeded) rand, so a run's payments are reproducible
sub uuid
{
	my $hex = join('', map { sprintf('%04x', int(rand(65536))) } 1 .. 8);
	substr($hex, 12, 1) = '4';
	substr($hex, 16, 1) = (qw(8 9 a b))[ int(rand(4)) ];
	return join('-', substr($hex, 0, 8), substr($hex, 8, 4), substr($hex, 12, 4),
		substr($hex, 16, 4), substr($hex, 20, 12));
}

sub payload
{
	my ($pid, $i) = @_;
	return qq({"paymentId": "$pid", "userId": "$USER_ID", "dateTimestamp": "1709553600", )
	  . qq("description": "chaos payment $i", "currency": "GBP", "amount": )
	  . sprintf('%d.%02d', 1 + $i % 5000, $i % 100) . '}';
}

# new(node => $node, n => N, clients => C, seed => S, kill_every => [min, max] s)
sub new
{
	my ($class, %a) = @_;
	srand($a{seed});
	my $self = bless {
		node => $a{node},
		n => $a{n},
		kill_every => $a{kill_every} // [ 1, 3 ],
		dir => "$PostgreSQL::Test::Utils::tmp_check/chaos_clients_" . $a{node}->name,
		worker_kills => 0,
		postmaster_kills => 0,
		accepted => {},
		attempted => {},
		rounds => 0,
		lost_connections => 0,
		submit_errors => 0,
		clients => [],
	}, $class;
	mkdir $self->{dir};
	my @ids = map { uuid() } 1 .. $a{n};
	$self->{ids} = \@ids;
	for my $c (0 .. $a{clients} - 1)
	{
		my @mine = grep { $_ % $a{clients} == $c } 0 .. $#ids;
		push @{ $self->{clients} }, { id => $c, todo => \@mine, pid => undef };
	}
	return $self;
}

sub ids { return $_[0]->{ids}; }

# accepted so far, counting the answers of running clients too (from the
# size of their output: psql's buffering makes this a slight underestimate)
sub progress
{
	my ($self) = @_;
	my $running = 0;
	for my $c (grep { defined $_->{pid} } @{ $self->{clients} })
	{
		$running += int((-s "$self->{dir}/client$c->{id}.out" // 0) / 46);
	}
	return $self->accepted_count + $running;
}
sub accepted_ids { return [ sort keys %{ $_[0]->{accepted} } ]; }
sub accepted_count { return scalar keys %{ $_[0]->{accepted} }; }

sub _start_client
{
	my ($self, $c) = @_;
	my @todo = grep { !$self->{accepted}{ $self->{ids}[$_] } } @{ $c->{todo} };
	$c->{todo} = \@todo;
	return 0 unless @todo;
	my $base = "$self->{dir}/client$c->{id}";
	open my $fh, '>', "$base.sql" or die $!;
	for my $i (@todo)
	{
		my $pid = $self->{ids}[$i];
		my $p = payload($pid, $i);
		print $fh "SELECT 'ACK $pid ' || (submit_payment('$p'::jsonb) ->> 'message');\n";
	}
	close $fh;
	$self->{rounds}++;
	my $child = fork();
	die "fork: $!" unless defined $child;
	if ($child == 0)
	{
		open STDIN, '<', '/dev/null';
		open STDOUT, '>', "$base.out";
		open STDERR, '>', "$base.err";
		exec 'psql', '-X', '-A', '-t', '-q', '-d', $self->{node}->connstr('postgres'),
		  '-f', "$base.sql";
		exit 127;
	}
	$c->{pid} = $child;
	return 1;
}

# collect the answers of a finished client
sub _reap_client
{
	my ($self, $c) = @_;
	my $base = "$self->{dir}/client$c->{id}";
	my $acks = 0;
	open my $fh, '<', "$base.out" or die $!;
	while (<$fh>)
	{
		if (/^ACK (\S+) OK$/) { $self->{accepted}{$1} = 1; $acks++; }
	}
	close $fh;
	$self->{lost_connections}++ if $? >> 8 == 2;
	open $fh, '<', "$base.err" or die $!;
	while (<$fh>) { $self->{submit_errors}++ if /ERROR:/; }
	close $fh;
	$c->{pid} = undef;
	# a client that cannot connect (server restarting) waits a little
	$c->{not_before} = time() + ($acks ? 0 : 0.2);
}

# wait for the running clients to end (a crash cuts their connections) and
# collect their answers, starting none
sub reap_all
{
	my ($self) = @_;
	for my $c (grep { defined $_->{pid} } @{ $self->{clients} })
	{
		waitpid($c->{pid}, 0);
		$self->_reap_client($c);
	}
	return;
}

# true while some client has work left; starts and reaps clients
sub step_clients
{
	my ($self) = @_;
	my $busy = 0;
	for my $c (@{ $self->{clients} })
	{
		if (defined $c->{pid})
		{
			if (waitpid($c->{pid}, WNOHANG) > 0) { $self->_reap_client($c); }
			else { $busy = 1; next; }
		}
		if (time() < ($c->{not_before} // 0))
		{
			$busy = 1 if grep { !$self->{accepted}{ $self->{ids}[$_] } } @{ $c->{todo} };
			next;
		}
		$busy = 1 if $self->_start_client($c);
	}
	return $busy;
}

# $try->() until it returns true, every 200 ms for at most $seconds
sub retry
{
	my ($try, $seconds) = @_;
	my $end = time() + $seconds;
	while (time() < $end)
	{
		return 1 if eval { $try->() };
		usleep(200_000);
	}
	return 0;
}

sub postmaster_pid
{
	my ($self) = @_;
	open my $fh, '<', $self->{node}->data_dir . '/postmaster.pid' or return undef;
	my $pid = <$fh>;
	close $fh;
	chomp $pid;
	return $pid =~ /^\d+$/ && kill(0, $pid) ? $pid : undef;
}

sub first_line
{
	my ($path) = @_;
	open my $fh, '<', $path or return undef;
	my $line = <$fh>;
	close $fh;
	return $line;
}

# A process that exited may stay a zombie until its new parent, init, reaps
# it: gone all the same.
sub alive
{
	my ($pid) = @_;
	my $stat = first_line("/proc/$pid/stat") // return 0;
	return $stat !~ /^\d+ \(.*\) [ZX] /;
}

# pids of the processes whose parent is $parent
sub children_of
{
	my ($parent) = @_;
	my @pids;
	for my $stat (glob '/proc/[0-9]*/stat')
	{
		my $line = first_line($stat) // next;
		push @pids, $1 if $line =~ /^(\d+) \(.*\) \S (\d+) / && $2 == $parent;
	}
	return @pids;
}

# pids of the postmaster's children whose title says "payment worker"
sub worker_pids
{
	my ($self) = @_;
	my $pm = $self->postmaster_pid // return ();
	return grep { (first_line("/proc/$_/cmdline") // '') =~ /payment worker/ } children_of($pm);
}

sub kill_random_worker
{
	my ($self) = @_;
	my @w = $self->worker_pids;
	return 0 unless @w;
	my $victim = $w[ int(rand(@w)) ];
	kill 'KILL', $victim or return 0;
	$self->{worker_kills}++;
	return 1;
}

# kill -9 of the postmaster; its children notice and exit; start it again
sub kill_postmaster
{
	my ($self) = @_;
	my $node = $self->{node};
	my $pm = $self->postmaster_pid or croak 'no postmaster to kill';
	my @children = children_of($pm);
	my $t0 = time();
	# the pid the server itself wrote: the node object's own record of it
	# can be missing after a restart, and then kill9 kills nothing
	kill('KILL', $pm);
	$node->kill9;
	$self->{postmaster_kills}++;
	for my $i (1 .. 600)
	{
		my @left = grep { alive($_) } @children;
		last unless @left;
		note('still running after the postmaster died: '
			  . join(', ', map { (first_line("/proc/$_/cmdline") // '?') =~ s/\0/ /gr } @left))
		  if $i % 10 == 0;
		usleep(100_000);
	}
	for my $i (1 .. 100)
	{
		last unless alive($pm);
		usleep(100_000);
	}
	croak "postmaster $pm survived kill -9" if alive($pm);
	# This sandbox's init reaps orphans lazily: a zombie postmaster keeps
	# its pid "running" and the new postmaster would refuse its lock files.
	# Every process of the old server has exited: the lock files are stale.
	unlink($node->data_dir . '/postmaster.pid', $node->host . '/.s.PGSQL.' . $node->port . '.lock')
	  if !alive($pm) && kill(0, $pm);
	$self->{postmaster_restart_wait} = time() - $t0;
	$node->start;
}

# Run the clients to the end while killing: a worker every kill_every (1-3)
# seconds and at each tenth of the payments, the postmaster when a third
# and two thirds of the payments were accepted.  $tick->($self) is called
# every loop (poison, ...).  Returns the seconds it took.
sub run
{
	my ($self, %opt) = @_;
	my $started = time();
	my ($min, $max) = @{ $self->{kill_every} };
	my $next_kill = $started + $min + rand($max - $min);
	my @pm_kills_at = (int($self->{n} / 3), int(2 * $self->{n} / 3));
	# and at each tenth of the payments, however fast the run goes
	my @worker_kills_at = map { int($self->{n} * $_ / 10) } 1 .. 9;
	my $deadline = $started + ($opt{timeout} // 600);
	while ($self->step_clients)
	{
		croak 'chaos clients did not finish in time' if time() > $deadline;
		if ($ENV{PAYMENT_CHAOS_NO_KILLS}) { }
		elsif (@pm_kills_at && $self->progress >= $pm_kills_at[0])
		{
			shift @pm_kills_at;
			$self->kill_postmaster;
		}
		elsif (time() >= $next_kill
			|| (@worker_kills_at && $self->progress >= $worker_kills_at[0]))
		{
			shift @worker_kills_at while @worker_kills_at && $self->progress >= $worker_kills_at[0];
			$self->kill_random_worker;
			$next_kill = time() + $min + rand($max - $min);
		}
		$opt{tick}->($self) if $opt{tick};
		if (time() >= ($self->{next_note} // 0))
		{
			note(sprintf('chaos %.0f s: %d accepted, %d worker kills, %d postmaster kills',
					time() - $started, $self->progress, $self->{worker_kills},
					$self->{postmaster_kills}));
			$self->{next_note} = time() + 5;
		}
		usleep(20_000);
	}
	return time() - $started;
}

# keep killing workers while $done->() is false, for at most $seconds
sub kill_while
{
	my ($self, $done, $seconds) = @_;
	my ($min, $max) = @{ $self->{kill_every} };
	my $end = time() + $seconds;
	my $next_kill = time() + $min + rand($max - $min);
	while (time() < $end)
	{
		return 1 if eval { $done->() };
		if (time() >= $next_kill)
		{
			$self->kill_random_worker;
			$next_kill = time() + $min + rand($max - $min);
		}
		usleep(200_000);
	}
	return 0;
}

# The table chaos_ids (payment_id, accepted): every payment the clients
# submitted, and whether its submit answered OK.  Once the clients are done.
sub record_ids
{
	my ($self) = @_;
	my $node = $self->{node};
	my %acc = map { $_ => 1 } @{ $self->accepted_ids };
	my $copy = join("\n", map { "$_\t" . ($acc{$_} ? 't' : 'f') } @{ $self->{ids} });
	# a postmaster killed at the end of the run may still be recovering
	$node->poll_query_until('postgres', 'SELECT true')
	  or die 'the server did not come back after the chaos run';
	$node->safe_psql('postgres', qq{
DROP TABLE IF EXISTS chaos_ids;
CREATE TABLE chaos_ids (payment_id uuid PRIMARY KEY, accepted bool NOT NULL);
COPY chaos_ids FROM STDIN;
$copy
\\.
});
}

# The outside checks every chaos run makes on the payments.  Returns
# { lost, doubled, stored_unsubmitted }.
sub check_payments
{
	my ($self, $what) = @_;
	my $node = $self->{node};
	my $accepted = $self->accepted_ids;
	$self->record_ids;

	my $lost = $node->safe_psql('postgres', q{
SELECT count(*) FROM chaos_ids c
 WHERE accepted AND NOT EXISTS (SELECT 1 FROM payment.payments p WHERE p.payment_id = c.payment_id)});
	my $doubled = $node->safe_psql('postgres', q{
SELECT count(*) FROM (SELECT payment_id FROM payment.payments JOIN chaos_ids USING (payment_id)
                       GROUP BY payment_id HAVING count(*) > 1) d});
	my $unsubmitted = $node->safe_psql('postgres', q{
SELECT count(*) FROM payment.payments p
 WHERE NOT EXISTS (SELECT 1 FROM chaos_ids c WHERE c.payment_id = p.payment_id)});
	my $wrong = $node->safe_psql('postgres', qq{
SELECT count(*) FROM payment.payments p JOIN chaos_ids c USING (payment_id)
 WHERE p.user_id <> '$USER_ID' OR p.body ->> 'description' NOT LIKE 'chaos payment %'});

	is($lost, '0', "$what: every payment whose submit returned OK is stored");
	is($doubled, '0', "$what: no payment stored twice");
	is($unsubmitted, '0', "$what: nothing stored that no client submitted");
	is($wrong, '0', "$what: stored payments carry the submitted bodies");
	return { accepted => scalar @$accepted, lost => $lost, doubled => $doubled };
}

# one line for the report
sub summary
{
	my ($self, $what, $r, $seconds, $extra) = @_;
	return sprintf('%s: %d payments by %d clients, %d answered OK; %d submit errors and %d '
		  . 'lost connections (retried); lost %s, doubled %s; %d worker kill -9, %d postmaster '
		  . 'kill -9%s; %.0f s', $what, $self->{n}, scalar @{ $self->{clients} },
		$r->{accepted}, $self->{submit_errors}, $self->{lost_connections}, $r->{lost},
		$r->{doubled}, $self->{worker_kills}, $self->{postmaster_kills}, $extra // '', $seconds);
}

# Crashes other than ours: the server log must show only SIGKILLs (signal
# 9), no PANIC and no failed assertion.
sub check_log
{
	my ($self, $what) = @_;
	my $log = slurp_file($self->{node}->logfile);
	my @signals = $log =~ /terminated by signal (\d+)/g;
	my @other = grep { $_ != 9 } @signals;
	is(scalar(@other), 0, "$what: no process died of a signal other than our kill -9")
	  or diag("signals: @other");
	ok($log !~ /PANIC:|TRAP:/, "$what: no PANIC or failed assertion in the server log");
	# the node logs SQLSTATEs (log_line_prefix has %e): XX000 is a bug
	my @internal = $log =~ /^(.* XX000 .*)$/mg;
	is(scalar(@internal), 0, "$what: no internal error (XX000) in the server log")
	  or diag(join("\n", @internal[ 0 .. ($#internal < 4 ? $#internal : 4) ]));
	return { kill9_in_log => scalar(@signals) };
}

1;
