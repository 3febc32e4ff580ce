# A replaced SQS queue recorded, drained after a restart and forgotten
# (630_sqs_retired_restart.pl, every assertion of it) by workers connected
# as a non-superuser payment.worker_role.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use AsWorkerRole;

AsWorkerRole::exec_test('630_sqs_retired_restart.pl');
