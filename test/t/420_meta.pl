# META.json, the PGXN distribution metadata (meta-spec 1.0.0): well-formed
# JSON with every required key, and in step with payment.control and the
# Makefile, so that a release cannot ship metadata of another version.
use strict;
use warnings;
use JSON::PP;
use Test::More;

sub slurp
{
	my ($file) = @_;
	open my $fh, '<', $file or die "cannot open $file: $!";
	local $/;
	return scalar <$fh>;
}

my $meta = eval { JSON::PP->new->utf8->relaxed(0)->decode(slurp('META.json')) };
ok($meta, 'META.json is well-formed JSON') or diag($@);
$meta //= {};

for my $key (qw(name abstract version maintainer license provides meta-spec))
{
	ok(defined $meta->{$key}, "META.json has the required key $key");
}
is($meta->{name}, 'payment', 'name');
is($meta->{'meta-spec'}{version}, '1.0.0', 'meta-spec 1.0.0');

my $semver = qr/^\d+\.\d+\.\d+$/;
like($meta->{version}, $semver, 'distribution version is semantic');

# the control file's default_version is what CREATE EXTENSION installs
my ($default_version) = slurp('payment.control') =~ /^default_version\s*=\s*'([^']+)'/m;
ok(defined $default_version, 'payment.control has a default_version');
is(join('.', (split /\./, $meta->{version})[0, 1]), $default_version,
	'distribution version matches default_version');

my $p = $meta->{provides}{payment};
ok($p, 'provides the payment extension');
is($p->{version}, $meta->{version}, 'the extension version is the distribution version');
ok($p->{abstract}, 'the extension has an abstract');
ok(-f $p->{file}, "provides.file ($p->{file}) exists");
ok(-f $p->{docfile}, "provides.docfile ($p->{docfile}) exists");

# every script of that version is either shipped or built by the Makefile
my $makefile = slurp('Makefile');
like($makefile, qr/^DATA\b.*payment--1\.0\.sql/m, 'Makefile installs the 1.0 script');
# one upgrade script per release, from 1.0 to default_version, none skipped
my ($major, $minor) = split /\./, $default_version;
for my $to (1 .. $minor)
{
	my $script = sprintf('payment--%d.%d--%d.%d.sql', $major, $to - 1, $major, $to);
	like($makefile, qr/^DATA\b.*\Q$script\E/m, "Makefile installs $script");
	ok(-f $script, "$script exists");
}

# The PostgreSQL prerequisite is a version range (meta-spec "Version
# Ranges": comma-separated clauses, each an operator and a version, a bare
# version meaning >=).  It must name only the majors built and tested: every
# 15.x, and neither 14 nor 16.
sub version_cmp
{
	my ($x, $y) = @_;
	my @x = split /\./, $x;
	my @y = split /\./, $y;
	for my $i (0 .. 2)
	{
		my $c = ($x[$i] // 0) <=> ($y[$i] // 0);
		return $c if $c;
	}
	return 0;
}

# undef when the range is not well-formed, else whether $version is in it
sub in_range
{
	my ($range, $version) = @_;
	my %holds = (
		'>=' => sub { $_[0] >= 0 },
		'>' => sub { $_[0] > 0 },
		'<=' => sub { $_[0] <= 0 },
		'<' => sub { $_[0] < 0 },
		'==' => sub { $_[0] == 0 },
		'!=' => sub { $_[0] != 0 });
	my $admits = 1;
	for my $clause (split /,/, $range, -1)
	{
		my ($op, $v) = $clause =~ /^\s*(>=|<=|==|!=|>|<)?\s*(\d+\.\d+\.\d+)\s*$/
		  or return undef;
		$admits &&= $holds{ $op // '>=' }->(version_cmp($version, $v));
	}
	return $admits;
}

my $pg_range = $meta->{prereqs}{runtime}{requires}{PostgreSQL} // '';
ok(defined in_range($pg_range, '15.0.0'), "the PostgreSQL prerequisite \"$pg_range\" is a version range");
ok(in_range($pg_range, $_), "requires PostgreSQL 15: admits $_") for qw(15.0.0 15.4.0 15.99.0);
ok(!in_range($pg_range, $_), "requires PostgreSQL 15: excludes $_") for qw(14.99.0 16.0.0 16.4.0 17.0.0);

# licence strings the spec knows (section "license")
my %licenses = map { $_ => 1 }
  qw(agpl_3 apache_1_1 apache_2_0 artistic_1 artistic_2 bsd freebsd gfdl_1_2
  gfdl_1_3 gpl_1 gpl_2 gpl_3 lgpl_2_1 lgpl_3_0 mit mozilla_1_0 mozilla_1_1
  openssl perl_5 postgresql qpl_1_0 ssleay sun zlib open_source restricted
  unrestricted unknown);
ok(!ref $meta->{license} && $licenses{ $meta->{license} },
	'license is one of the spec\'s strings');

my $maintainers = ref $meta->{maintainer} ? $meta->{maintainer} : [ $meta->{maintainer} ];
ok(@$maintainers && !grep({ !/\S/ } @$maintainers), 'at least one maintainer');
ok(ref $meta->{resources} eq 'HASH' && %{ $meta->{resources} }, 'resources given');

done_testing();
