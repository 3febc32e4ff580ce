# No credential in any log or activity view (issue 18): statements naming
# the entry points or request.headers are masked in the server log (stderr,
# csvlog and jsonlog; log_statement, log_min_duration_statement, STATEMENT
# lines, bind parameters, echoed literals) and in pg_stat_activity, whether
# they fail before the call, in it, or succeed; other statements are logged
# unchanged.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use AuthHelper;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $node = new_auth_node('auth_redaction', q{
payment.auth = 'api_key'
logging_collector = on
log_destination = 'stderr,csvlog,jsonlog'
log_directory = 'log'
log_statement = 'all'
log_min_duration_statement = 0
log_parameter_max_length_on_error = -1
});
my $user = '0fa8ca85-d50d-44f9-8a00-5ad67a6d29e4';
my $key = $node->safe_psql('postgres', "SELECT create_api_key('partner')");
my ($id, $secret) = split /\./, $key;
my $wrong = substr($key, 0, -4) . (substr($key, -4) eq 'AAAA' ? 'BBBB' : 'AAAA');
my $wrong_secret = (split /\./, $wrong)[1];
$node->safe_psql('postgres', 'CREATE ROLE nobody LOGIN');

my @secrets = ($secret, $wrong_secret);
my $logdir = $node->data_dir . '/log';

# every log file of each format, once $marker (a statement logged
# unchanged) has reached all three
sub logs
{
	my ($marker) = @_;
	$node->safe_psql('postgres', "DO \$\$BEGIN RAISE LOG '$marker'; END\$\$");
	my %text;
	for (1 .. 100)
	{
		%text = (stderr => '', csv => '', json => '');
		opendir(my $dh, $logdir) or die "no $logdir: $!";
		for my $f (sort readdir $dh)
		{
			my $fmt = $f =~ /\.csv$/ ? 'csv' : $f =~ /\.json$/ ? 'json' : $f =~ /\.log$/ ? 'stderr' : next;
			$text{$fmt} .= slurp_file("$logdir/$f");
		}
		closedir $dh;
		last unless grep { index($text{$_}, $marker) < 0 } keys %text;
		usleep(100_000);
	}
	$text{stderr} .= slurp_file($node->logfile);
	return \%text;
}

sub no_secret_in_logs
{
	my ($what, $logs) = @_;
	for my $fmt (sort keys %$logs)
	{
		my $count = 0;
		$count += () = $logs->{$fmt} =~ /\Q$_\E/g for @secrets;
		is($count, 0, "$what: no key secret in the $fmt log");
	}
}

my $doc = payload($user);
my %shapes = (
	'bad JSON literal' => [ qq~SELECT submit_payment('{"x"', '$key')~, '22P02' ],
	'bad uuid literal' => [ qq~SELECT payment_status('not-a-uuid', '$key')~, '22P02' ],
	'wrong argument type' => [ qq~SELECT payment_status(42, '$key')~, '42883' ],
	'no EXECUTE privilege' => [ qq~SELECT submit_payment('$doc', '$key')~, '42501', 'nobody' ],
	'syntax error' => [ qq~SELECT submit_payment('$doc', '$key'~, '42601' ],
	'unterminated literal' => [ qq~SELECT submit_payment('$doc', '$key)~, '42601' ],
	'key as the payload' => [ qq~SELECT submit_payment('$key')~, '22P02' ],
	'key as the payment id' => [ qq~SELECT payment_status('$key', NULL)~, '22P02' ],
	'key as the payment id, E string' => [ qq~SELECT payment_status(E'$key', NULL)~, '22P02' ],
	'key unquoted' => [ qq~SELECT submit_payment('$doc', $key)~, '42P01|42601' ],
	'key in a comment' => [ qq~SELECT submit_payment('$doc', NULL) -- $key~, '28000' ],
	'upper case, cast' => [ qq~SELECT PAYMENT_STATUS('$key'::uuid)~, '22P02' ],
	'key in bad request.headers' => [ qq~SET request.headers = '{"x-api-key": "$key"'; SELECT submit_payment('$doc')~, '28000' ],
	'wrong key, refused in the call' => [ qq~SELECT submit_payment('$doc', '$wrong')~, '28P01' ],
	'valid key' => [ qq~SELECT submit_payment('$doc', '$key')~, 'ok' ],
	'valid key, dollar quotes' => [ qq~SELECT submit_payment(\$\$$doc\$\$, \$k\$$key\$k\$)~, 'ok' ],
	'valid key in request.headers' => [ qq~SET request.headers = '{"x-api-key": "$key"}'; SELECT submit_payment('$doc')~, 'ok' ],
	'prepared, then EXECUTE' => [ qq~PREPARE p(jsonb, text) AS SELECT submit_payment(\$1, \$2); EXECUTE p('$doc', '$key')~, 'ok' ],
	'prepared, then EXECUTE with a bad payload' => [ qq~PREPARE p(jsonb, text) AS SELECT submit_payment(\$1, \$2); EXECUTE p('{"x"', '$key')~, '22P02' ],
);

sub run_shapes
{
	my ($part) = @_;
	for my $what (sort keys %shapes)
	{
		my ($sql, $expected, $role) = @{ $shapes{$what} };
		like(sqlstate($node, $sql, $role ? (role => $role) : ()), qr/^(?:$expected)$/, "$part: $what: $expected");
	}
}

# part 1: every statement logged, with its duration
run_shapes('log_statement = all');
# psql sends a script statement by statement, -c all at once
my ($ret) = $node->psql('postgres', '', extra_params => [ '-c', qq{SELECT 1; SELECT payment_status('$key', NULL)} ]);
isnt($ret, 0, 'one message of two statements, the second failing before the call');
my ($state, $out, $err) = sqlstate($node, qq~SELECT submit_payment('$doc', '$wrong')~);
like($err, qr/ERROR:  28P01: invalid API key/, 'a refusal in the call keeps its message for the client');

# extended protocol: the key is a bind parameter (pgbench -M extended)
$node->pgbench('-n -M extended -t 2', 0, [qr/number of transactions actually processed: 2/], [qr/^$/],
	'pgbench -M extended: submit_payment(:payload, :key)',
	{ '204_submit.sql' => "SELECT submit_payment(:payload, :key);\n" },
	'-D', "payload=$doc", '-D', "key=$key");
$node->pgbench('-n -M extended -t 1', 2, [qr/.*/], [qr/invalid input syntax for type uuid/],
	'pgbench -M extended: the key bound as the payment id',
	{ '204_status.sql' => "SELECT payment_status(:key, NULL);\n" },
	'-D', "key=$key");

my $logs = logs('end-of-part-1');
no_secret_in_logs('log_statement = all', $logs);
like($logs->{stderr}, qr/LOG:  statement: SELECT submit_payment\('\*\*\*', '\*\*\*'\)\n/,
	'the statement is logged masked');
like($logs->{stderr}, qr/LOG:  statement: SET request.headers = '\*\*\*';?\n/,
	'SET request.headers masked');
like($logs->{stderr}, qr/LOG:  statement: SELECT 1; SELECT payment_status\('\*\*\*', NULL\)\n/,
	'a message of two statements masked');
like($logs->{stderr}, qr/execute <unnamed>: SELECT submit_payment\(\$1, \$2\);?\n[^\n]*DETAIL:  parameters: \$1 = '\*\*\*', \$2 = '\*\*\*'\n/,
	'bind parameters masked in the execute line');
like($logs->{stderr}, qr/ERROR:  invalid input syntax for type uuid: "\*\*\*"/,
	'a literal echoed by an error before the call is masked');
like($logs->{stderr}, qr/STATEMENT:  SELECT payment_status\('\*\*\*', NULL\)\n/,
	'the STATEMENT line is masked');
like($logs->{stderr}, qr/statement: EXECUTE p\('\*\*\*', '\*\*\*'\)\n/,
	'EXECUTE of a prepared statement naming submit_payment masked');
like($logs->{stderr}, qr/refused submit_payment by role "postgres", API key "partner"(, payment "[^"]*")?: wrong API key secret/,
	'the audit line of a refusal in the call is kept');
like($logs->{csv}, qr/"SELECT payment_status\('\*\*\*', NULL\)"/, 'csvlog query field masked');
like($logs->{json}, qr/"statement":"SELECT payment_status\('\*\*\*', NULL\)"/, 'jsonlog statement field masked');
unlike($logs->{stderr}, qr/CONTEXT:  [^\n]*(JSON data|portal)/, 'no error context of these statements');

# other statements are logged as they are
is(sqlstate($node, q{SELECT 'canary-not-a-uuid'::uuid}), '22P02', 'a statement not naming the front door fails');
$logs = logs('end-of-canary');
for my $fmt (qw(stderr csv json))
{
	like($logs->{$fmt}, qr/invalid input syntax for type uuid: (\\?"|"")canary-not-a-uuid(\\?"|"")/,
		"$fmt: another statement's error message unchanged");
	like($logs->{$fmt}, qr/SELECT 'canary-not-a-uuid'::uuid/, "$fmt: another statement unchanged");
}

# part 2: only durations logged, with the statement
$node->append_conf('postgresql.conf', "log_statement = none\n");
$node->reload;
$node->poll_query_until('postgres', 'SHOW log_statement', 'none') or die 'log_statement not reloaded';
run_shapes('log_min_duration_statement = 0');
$logs = logs('end-of-durations');
no_secret_in_logs('log_min_duration_statement = 0', $logs);
like($logs->{stderr}, qr/LOG:  duration: [0-9.]+ ms  statement: SELECT submit_payment\('\*\*\*', '\*\*\*'\)\n/,
	'the duration line masks the statement');
like($logs->{stderr}, qr/LOG:  duration: [0-9.]+ ms  statement: SET request.headers = '\*\*\*';?\n/,
	'also of SET request.headers');

# part 3: the defaults (errors logged with their statement, nothing else)
$node->append_conf('postgresql.conf', "log_min_duration_statement = -1\n");
$node->reload;
$node->poll_query_until('postgres', 'SHOW log_min_duration_statement', '-1') or die 'not reloaded';
run_shapes('defaults');

# pg_stat_activity, from a second session, while the call runs and after
my $session = $node->background_psql('postgres', on_error_stop => 0);
my $session_pid = $session->query_safe('SELECT pg_backend_pid()');
my $activity = "SELECT state || ': ' || query FROM pg_stat_activity WHERE pid = $session_pid";
$session->query_until(qr/started/, qq{\\echo started\nSELECT submit_payment('$doc', '$key'), pg_sleep(2);\n});
my @seen;
for (1 .. 100)
{
	my $now = $node->safe_psql('postgres', $activity);
	next if $now =~ /pg_backend_pid/;	# the call not sent yet
	push @seen, $now;
	last if $now =~ /^idle/;
	usleep(50_000);
}
ok((grep { /^active: SELECT submit_payment\('\*\*\*', '\*\*\*'\), pg_sleep\(2\);$/ } @seen),
	'pg_stat_activity shows the masked call while it runs');
like($seen[-1], qr/^idle: SELECT submit_payment\('\*\*\*', '\*\*\*'\), pg_sleep\(2\);$/, 'and after');
is(scalar(grep { /\Q$secret\E/ } @seen), 0, 'and never the key (' . scalar(@seen) . ' polls)');
$session->query(qq{SELECT payment_status('$key', NULL)});
like($node->safe_psql('postgres', $activity), qr/^idle: SELECT payment_status\('\*\*\*', NULL\)\n?;?$/,
	'after a call that failed before it ran, the masked text stays');

# a prepared statement run again is not parsed again: masked at executor start
my ($pgb_out, $pgb_err) = ('', '');
open(my $fh, '>', $node->basedir . '/204_prepared.sql') or die;
print $fh "SELECT submit_payment(:payload, '$key'), pg_sleep(0.3);\n";
close $fh;
my $pgb = IPC::Run::start(
	[ 'pgbench', '-n', '-M', 'prepared', '-t', '4', '-D', "payload=$doc",
		'-f', $node->basedir . '/204_prepared.sql', '-h', $node->host, '-p', $node->port, 'postgres' ],
	'>', \$pgb_out, '2>', \$pgb_err);
my @prepared_seen;
while ($pgb->pumpable)
{
	push @prepared_seen, $node->safe_psql('postgres',
		q{SELECT coalesce(string_agg(query, E'\n'), '') FROM pg_stat_activity WHERE query LIKE '%pg_sleep(0.3)%' AND pid <> pg_backend_pid()});
	$pgb->pump_nb;
	usleep(50_000);
}
$pgb->finish;
like($pgb_out, qr/number of transactions actually processed: 4/, 'pgbench -M prepared with the key as a literal');
is(scalar(grep { /\Q$secret\E/ } @prepared_seen), 0,
	'pg_stat_activity never shows the key of the prepared statement (' . scalar(@prepared_seen) . ' polls)');
ok((grep { /submit_payment\(\$1, '\*\*\*'\)/ } @prepared_seen), 'but its masked text')
  or diag(join("\n", @prepared_seen));
$session->quit;

$logs = logs('end-of-part-3');
no_secret_in_logs('defaults', $logs);
like($logs->{stderr}, qr/ERROR:  invalid input syntax for type uuid: "\*\*\*" at character 23\n[^\n]*STATEMENT:  SELECT payment_status\('\*\*\*', NULL\)\n/,
	'defaults: error and STATEMENT masked');
like($logs->{stderr}, qr/ERROR:  permission denied for function submit_payment\n[^\n]*STATEMENT:  SELECT submit_payment\('\*\*\*', '\*\*\*'\)\n/,
	'defaults: no EXECUTE privilege, STATEMENT masked');

$node->stop;
done_testing();
