# PGXS build of the payment extension.
MODULE_big = payment
# src/ is layered: frontdoor -> schema, queue -> common; drain -> schema, queue.
# Headers are included as "layer/name.h" (names chosen not to shadow PostgreSQL's
# own common/*.h, which share the -I path prefix).
OBJS = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c src/*/*.c)))

EXTENSION = payment
DATA = payment--1.0.sql
PGFILEDESC = "payment - payment intake queue and workers"

PG_CPPFLAGS = -I$(srcdir)/src
PG_CFLAGS = -Wall -Wmissing-prototypes -Wpointer-arith -Wendif-labels
SHLIB_LINK = -lcurl -lcrypto

REGRESS = setup validate submit store redrive status stats redelivery
REGRESS_OPTS = --temp-instance=./tmp_check --temp-config=$(srcdir)/test/regress.conf --load-extension=payment

TAP_TESTS = 1
PROVE_TESTS = test/t/*.pl

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)
