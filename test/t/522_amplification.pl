# Input size is checked before anything expands it (issue 18).  A number is
# stored in a few bytes of jsonb whatever its exponent, so rendering the
# payload as text used to come before the size check: 2,000 copies of
# 1e131071 (16 KB of JSON) became 262 MB of digits, 8,200 copies took 9 s.
# Now: the text's length is computed from the jsonb first, numbers of more
# than 1,000 digits before or after the point are refused (22003) and a
# payload whose text would pass payment.max_payload_size is refused (22001)
# before it is rendered; each refused in well under 200 ms with under 50 MB
# of backend memory (VmHWM from /proc).  The computed length is exact
# (payloads of every JSON shape at their exact size pass, one byte less is
# refused).  submit_payments takes at most payment.max_batch_payments
# payments (54000) and each counts as a call against the server-wide rate
# limit and the API key's rate and quota: all or none.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use AuthHelper;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = new_auth_node('amplification');
my $user = '0fa8ca85-d50d-44f9-8a00-5ad67a6d29e4';

# t.pay(extra): a fresh valid payment, with `extra` (JSON text of members)
# added; t.attack(sql): runs sql, returns its outcome, the time it took and
# the growth of the backend's peak and resident memory
(my $setup = q{
CREATE SCHEMA t;
CREATE FUNCTION t.pay(extra text DEFAULT '') RETURNS jsonb LANGUAGE sql AS $$
  SELECT ('{"paymentId": "' || gen_random_uuid() || '", "userId": "USER",'
          ' "dateTimestamp": "1709553600", "description": "amplification", "currency": "GBP",'
          ' "amount": 7.99' || extra || '}')::jsonb $$;
CREATE FUNCTION t.vm(field text) RETURNS bigint LANGUAGE sql AS $$
  SELECT (regexp_match(pg_read_file('/proc/' || pg_backend_pid() || '/status'),
                       field || ':\s+(\d+) kB'))[1]::bigint $$;
CREATE FUNCTION t.attack(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  hwm bigint := t.vm('VmHWM'); rss bigint := t.vm('VmRSS');
  t0 timestamptz; state text := 'ok'; detail text; ms numeric;
BEGIN
  t0 := clock_timestamp();
  BEGIN
    EXECUTE sql;
  EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, detail = PG_EXCEPTION_DETAIL;
  END;
  ms := extract(epoch FROM clock_timestamp() - t0) * 1000;
  RETURN format('%s %s %s %s | %s', state, round(ms, 1), (t.vm('VmHWM') - hwm) / 1024,
                (t.vm('VmRSS') - rss) / 1024, detail);
END $$;
CREATE FUNCTION t.copies(n int, number text DEFAULT '1e131071') RETURNS text LANGUAGE sql AS $$
  SELECT string_agg(number, ', ') FROM generate_series(1, n) $$;
CREATE TABLE t.input (name text PRIMARY KEY, payload jsonb);
INSERT INTO t.input VALUES
  ('payment 2000', t.pay(', "x": [' || t.copies(2000) || ']')),
  ('payment 8200', t.pay(', "x": [' || t.copies(8200) || ']')),
  ('batch of a payment 2000', jsonb_build_array(t.pay(', "x": [' || t.copies(2000) || ']'))),
  ('batch of a payment 8200', jsonb_build_array(t.pay(', "x": [' || t.copies(8200) || ']'))),
  ('batch of 2000 numbers', ('[' || t.copies(2000) || ']')::jsonb),
  ('batch of 8200 numbers', ('[' || t.copies(8200) || ']')::jsonb),
  ('batch of 1000 amounts', (SELECT jsonb_agg(jsonb_set(t.pay(), '{amount}', '1e131071')) FROM generate_series(1, 1000))),
  ('payment 1100 of 1e999', t.pay(', "x": [' || t.copies(1100, '1e999') || ']')),
  ('batch of 100 payments 1100 of 1e999',
   (SELECT jsonb_agg(t.pay(', "x": [' || t.copies(1100, '1e999') || ']')) FROM generate_series(1, 100)));
}) =~ s/USER/$user/;
$node->safe_psql('postgres', $setup);
like($node->safe_psql('postgres', q{SELECT length(payload::text) FROM t.input WHERE name = 'payment 1100 of 1e999'}),
	qr/^11\d{5}$/, 'the control: 1,100 copies of 1e999 are over 1 MB of text');

# each attack in a session of its own, so that the peak memory is its own
my @attacks = (
	[ 'payment 2000', 'submit_payment', '22003' ],
	[ 'payment 8200', 'submit_payment', '22003' ],
	[ 'batch of a payment 2000', 'submit_payments', '22003' ],
	[ 'batch of a payment 8200', 'submit_payments', '22003' ],
	[ 'batch of 2000 numbers', 'submit_payments', '54000' ],
	[ 'batch of 8200 numbers', 'submit_payments', '54000' ],
	[ 'batch of 2000 numbers', 'submit_payments', '22003', 10000 ],
	[ 'batch of 8200 numbers', 'submit_payments', '22003', 10000 ],
	[ 'batch of 1000 amounts', 'submit_payments', '22003' ],
	[ 'payment 1100 of 1e999', 'submit_payment', '22001' ],
	[ 'batch of 100 payments 1100 of 1e999', 'submit_payments', '22001' ],
);
for my $a (@attacks)
{
	my ($name, $fn, $expect, $max_batch) = @$a;
	my $set = $max_batch ? "SET payment.max_batch_payments = $max_batch;\n" : '';
	my $label = $name . ($max_batch ? " (max_batch_payments $max_batch)" : '');
	my $out = $node->safe_psql('postgres', $set . qq{
SELECT t.attack(\$\$SELECT $fn(payload) FROM t.input WHERE name = '$name'\$\$)});
	my ($state, $ms, $hwm, $rss, $detail) = $out =~ /^(\S+) (\S+) (-?\d+) (-?\d+) \| (.*)$/s
	  or die "unexpected: $out";
	note sprintf('%-55s %s in %6.1f ms, peak memory +%d MB, resident +%d MB', "$fn($label):",
		$state, $ms, $hwm, $rss);
	is($state, $expect, "$fn($label) refused with $expect");
	cmp_ok($ms, '<', 200, "$fn($label) refused in under 200 ms ($ms ms)");
	cmp_ok($hwm, '<', 50, "$fn($label): backend peak memory grew by under 50 MB ($hwm MB)");
	like($detail, qr/at most 1000 digits before and 1000 after the decimal point/, 'the detail gives the limit')
	  if $expect eq '22003';
}

# what is not refused
sub try_sql
{
	my ($sql, $set) = @_;
	my ($state, $out, $err) = sqlstate($node, ($set // '') . $sql);
	return wantarray ? ($state, $err) : $state;
}
is(try_sql(q{SELECT submit_payment(t.pay())}), 'ok', 'a payment with a normal amount is accepted');
is(try_sql(q{SELECT submit_payments(jsonb_build_array(t.pay(), t.pay()))}), 'ok', 'and a batch of them');
is(try_sql(q{SELECT submit_payment(jsonb_set(t.pay(', "x": [1e-1000, -5e999]'), '{amount}', '9.99e999'))}), 'ok',
	'numbers of 1,000 digits before or after the point are accepted');
for my $n ('1e1000', '-1e1000', '1e-1001', '0.5e-1000', '123456789e992')
{
	my ($state, $err) = try_sql(qq{SELECT submit_payment(t.pay(', "x": $n'))});
	is($state, '22003', "$n refused with 22003");
}
my ($state, $err) = try_sql(q{SELECT submit_payment(t.pay(', "x": 1e1000'))});
like($err, qr/ERROR:  22003: payment payload holds a number out of range/, 'with a clear message');

# the computed length is the text's: each shape passes at its exact size,
# and is refused one byte below it with the existing message and detail
my @shapes = (
	q{, "s": "quote \" backslash \\\\ slash / \b\f\n\r\t \u0001 \u001f \u007f end"},
	q{, "u": "café 中文 😀 \u0041"},
	q{, "k \" \n \u0002": {"": [], "a": {}, "b": [[], {}, [[]]]}},
	q{, "n": [0, -0, 1, -1, 0.5, -0.005, 1.50, 1e3, 1E-3, 12345678901234567890.123, 100000000, 0.00000001]},
	q{, "b": [true, false, null, {"t": true, "f": false, "z": null}]},
	q{, "deep": [[[[[1]]]]], "o": {"a": {"b": {"c": 1}}}},
);
for my $extra (@shapes)
{
	(my $sql_extra = $extra) =~ s/'/''/g;
	my $len = $node->safe_psql('postgres', "SELECT octet_length(t.pay('$sql_extra')::text)");
	is(try_sql("SELECT submit_payment(t.pay('$sql_extra'))", "SET payment.max_payload_size = $len;\n"), 'ok',
		"accepted at its exact size ($len bytes): $extra");
	my ($st, $e) = try_sql("SELECT submit_payment(t.pay('$sql_extra'))",
		'SET payment.max_payload_size = ' . ($len - 1) . ";\n");
	is($st, '22001', '22001 one byte below');
	like($e, qr/DETAIL:  The payload is $len bytes as JSON text; the limit is ${\ ($len - 1)} bytes\./,
		'with the exact size in the detail');
}
($state, $err) = try_sql(q{SELECT submit_payment(t.pay(', "pad": "' || repeat('p', 600) || '"'))},
	"SET payment.max_payload_size = 64;\n");
is($state, '22001', 'a jsonb of more than 8 bytes per byte of the limit is refused at once');
like($err, qr/DETAIL:  The payload takes \d+ bytes as jsonb, so its JSON text is longer than the limit of 64 bytes\./,
	'and says so');

# payment.max_batch_payments
($state, $err) = try_sql(q{SELECT submit_payments((SELECT jsonb_agg(t.pay()) FROM generate_series(1, 1001)))});
is($state, '54000', 'a batch of 1,001 payments is refused by default: 54000');
like($err, qr/ERROR:  54000: too many payments in one batch\nDETAIL:  The batch holds 1001 payments; the limit is 1000\.\nHINT:  Submit the payments in batches of at most 1000\./,
	'with a detail and a hint');
is(try_sql(q{SELECT submit_payments((SELECT jsonb_agg(t.pay()) FROM generate_series(1, 1000)))}), 'ok',
	'1,000 are accepted');
is(try_sql(q{SELECT submit_payments('[1, 2, 3]')}, "SET payment.max_batch_payments = 2;\n"), '54000',
	'over the limit refused before any element is validated');
is(try_sql(q{SELECT submit_payments(jsonb_build_array(t.pay(), t.pay()))}, "SET payment.max_batch_payments = 2;\n"),
	'ok', 'at the limit accepted');
$node->safe_psql('postgres', 'CREATE ROLE client LOGIN');
is(sqlstate($node, 'SET payment.max_batch_payments = 5000', role => 'client'), '42501',
	'payment.max_batch_payments is for superusers');

# a batch counts as one call per payment: server-wide limit
sub batch { my ($n, $key) = @_;
	my $k = defined $key ? ", '$key'" : '';
	return "SELECT submit_payments((SELECT jsonb_agg(t.pay()) FROM generate_series(1, $n))$k)"; }
$node->safe_psql('postgres', q{
CREATE FUNCTION t.try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN EXECUTE sql; RETURN 'ok';
EXCEPTION WHEN OTHERS THEN RETURN SQLSTATE; END $$;});
sub tries
{
	my @sql = @_;
	return $node->safe_psql('postgres', 'SELECT ' . join(" || ' ' || ", map {
		(my $q = $_) =~ s/'/''/g; "t.try('$q')" } @sql));
}
$node->append_conf('postgresql.conf', "payment.rate_limit = 0.01\npayment.burst_limit = 5\n");
$node->reload;
$node->poll_query_until('postgres', 'SHOW payment.rate_limit', '0.01') or die;
is(tries(batch(3), batch(3), batch(2), 'SELECT submit_payment(t.pay())'), 'ok 53400 ok 53400',
	'server-wide burst of 5: batches of 3 and 2 pass, a second 3 is refused and draws nothing');
($state, $err) = try_sql(batch(2));
like($err, qr/ERROR:  53400: rate limit exceeded\nDETAIL:  The batch counts as 2 calls; the server-wide rate limit allows fewer now\.\nHINT:  Retry after \d+\.\d+ seconds\./,
	'the refusal says the batch counts as 2');
($state, $err) = try_sql(batch(6));
like($err, qr/DETAIL:  The batch counts as 6 calls; the server-wide rate limit allows at most 5 at once\.\nHINT:  Submit smaller batches\./,
	'a batch larger than the burst is told it never fits');
is(try_sql('SELECT submit_payments(\'[]\')'), '53400', 'an empty batch is still a call');

# the API key's bucket and quota, all or none with the server-wide limit
# (a restart fills the server-wide bucket again)
$node->append_conf('postgresql.conf', "payment.rate_limit = 0.01\npayment.burst_limit = 20\npayment.auth = 'api_key'\n");
$node->restart;
my $tight = $node->safe_psql('postgres', "SELECT create_api_key('tight', 0.01, 4)");
my $quota = $node->safe_psql('postgres', "SELECT create_api_key('quota5', quota_limit => 5, quota_period => '1 hour')");
my $free = $node->safe_psql('postgres', "SELECT create_api_key('free')");
is(tries(batch(3, $tight), batch(2, $tight), "SELECT submit_payment(t.pay(), '$tight')",
		"SELECT submit_payment(t.pay(), '$tight')"), 'ok 53400 ok 53400',
	'key burst of 4: a batch of 3, then a batch of 2 is refused, one call passes');
is(tries(batch(3, $quota), batch(3, $quota), batch(2, $quota), "SELECT submit_payment(t.pay(), '$quota')"),
	'ok 53400 ok 53400', 'quota of 5: 3, then 3 refused without using the quota, 2, then nothing');
($state, $err) = try_sql(batch(6, $quota));
like($err, qr/ERROR:  53400: quota exceeded\nDETAIL:  The batch counts as 6 calls; the API key quota allows at most 5 per period\./,
	'a batch over the whole quota is told so');
# server-wide: 20 - 3 - 1 - 3 - 2 = 11 left (refused calls drew nothing, even where the key refused)
is(tries(batch(11, $free), "SELECT submit_payment(t.pay(), '$free')"), 'ok 53400',
	'the server-wide bucket lost nothing to the batches the keys refused');
my $log = slurp_file($node->logfile);
like($log, qr/refused submit_payments by role "postgres", API key "tight": API key rate limit exceeded/,
	'a refused batch is audited');
like($log, qr/refused submit_payment by role "postgres", API key "free", payment "[^"]*": server-wide rate limit exceeded/,
	'with the key, now known when the server-wide limit refuses');

$node->stop;
done_testing();
