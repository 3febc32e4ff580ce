# The SQS backend end to end (110_sqs_end_to_end.pl, every assertion of it)
# with the workers connected as a non-superuser payment.worker_role that has
# only what payment.grant_worker_privileges gives it.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use AsWorkerRole;

AsWorkerRole::exec_test('110_sqs_end_to_end.pl');
