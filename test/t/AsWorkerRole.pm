# AsWorkerRole.pm: runs another TAP test of this directory in place of the
# calling one, with PAYMENT_TEST_WORKER_ROLE set, so that the clusters its
# helpers start (SqsPeers::start_node) have their workers connect as that
# non-superuser role.  Loads no PostgreSQL::Test module: those send the
# process's output to the test's log, which the exec'd test must not inherit.
package AsWorkerRole;

use strict;
use warnings;
use Carp;
use File::Basename qw(dirname);

sub exec_test
{
	my ($file, $role) = @_;
	$ENV{PAYMENT_TEST_WORKER_ROLE} = $role // 'payment_worker';
	exec($^X, (map { "-I$_" } grep { !ref } @INC), dirname(__FILE__) . "/$file")
	  or croak "cannot run $file: $!";
}

1;
