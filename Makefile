# StemeDB top-level build.
#
#   make deps      install missing Debian packages (apt-get), quiet when all are present
#   make           build every binary into build/bin
#   make test      deps, build, then unit, format-vector, integration and crash tests
#   make run       deps, build, then start a single node on 127.0.0.1:18180, data in ./var
#   make bench     benchmarks; results go to docs/benchmarks.md
#   make format    apply .clang-format;  make lint: check formatting and run cppcheck
#
# SANITIZE=address,undefined builds into a separate tree with those sanitizers on,
# and `make test SANITIZE=address,undefined` runs every test against that build.

comma := ,
SANITIZE ?=
ifeq ($(SANITIZE),)
BUILD := build
SAN_FLAGS :=
else
BUILD := build/san-$(subst $(comma),-,$(SANITIZE))
SAN_FLAGS := -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
endif
CC ?= cc
PKGS := libevent libevent_pthreads libevent_openssl openssl jansson libsodium libsystemd libcurl libprotobuf-c libnghttp2
OPT ?= -O2
CFLAGS_BASE := -std=c11 -D_GNU_SOURCE $(OPT) -g -Wall -Wextra -Werror -Wshadow \
  -Wstrict-prototypes -Wmissing-prototypes -fno-strict-aliasing -pthread \
  -Icommon/include -Iapi-server/src -I$(BUILD)/gen
CFLAGS_PKG = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS_PKG = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lrocksdb -lm -lpthread
ALL_CFLAGS = $(CFLAGS_BASE) $(SAN_FLAGS) $(CFLAGS_PKG) $(CFLAGS)
ALL_LDFLAGS = $(SAN_FLAGS) $(LDFLAGS)

PROTO_SRC := $(wildcard proto/*.proto)
PROTO_C := $(PROTO_SRC:proto/%.proto=$(BUILD)/gen/%.pb-c.c)
PROTO_H := $(PROTO_C:.c=.h)
COMMON_SRC := $(wildcard common/src/*.c)
API_SRC := $(filter-out api-server/src/main.c,$(wildcard api-server/src/*.c))
GATEWAY_SRC := $(filter-out cluster-gateway/src/main.c,$(wildcard cluster-gateway/src/*.c))
ARCHIVER_SRC := $(filter-out walarchiver/src/main.c,$(wildcard walarchiver/src/*.c))
CTL_SRC := $(wildcard tools/src/*.c)
UNIT_SRC := $(wildcard tests/unit/*/test_*.c)
BENCH_SRC := $(wildcard bench/*.c)

COMMON_OBJ := $(COMMON_SRC:%.c=$(BUILD)/obj/%.o) $(PROTO_C:$(BUILD)/gen/%.c=$(BUILD)/obj/gen/%.o)
API_OBJ := $(API_SRC:%.c=$(BUILD)/obj/%.o)
# The OpenAPI document is embedded in the API library as a byte array, so the
# binary serves it without reading a file at run time.
API_OBJ += $(BUILD)/obj/gen/openapi_doc.o
GATEWAY_OBJ := $(GATEWAY_SRC:%.c=$(BUILD)/obj/%.o)
ARCHIVER_OBJ := $(ARCHIVER_SRC:%.c=$(BUILD)/obj/%.o)
CTL_OBJ := $(CTL_SRC:%.c=$(BUILD)/obj/%.o)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bin/%)

LIB_COMMON := $(BUILD)/lib/libstemedb-common.a
LIB_API := $(BUILD)/lib/libstemedb-api.a
LIB_GATEWAY := $(BUILD)/lib/libstemedb-gateway.a
LIB_ARCHIVER := $(BUILD)/lib/libstemedb-walarchiver.a
# Libraries in link order: a daemon's own code first, common last.
LIBS_ALL := $(LIB_GATEWAY) $(LIB_ARCHIVER) $(LIB_API) $(LIB_COMMON)
BINS := $(BUILD)/bin/stemedb-api $(BUILD)/bin/stemedb-ctl
ifneq ($(wildcard cluster-gateway/src/main.c),)
BINS += $(BUILD)/bin/stemedb-gateway
endif
ifneq ($(wildcard walarchiver/src/main.c),)
BINS += $(BUILD)/bin/stemedb-walarchiver
endif

.PHONY: all deps test unit-test py-test crash-test run bench format lint clean install-deps-check fuzz
.DEFAULT_GOAL := all

all: $(BINS) $(UNIT_BIN) $(BENCH_BIN)

deps:
	@scripts/deps.sh

# Generated protobuf-c sources are built, not committed. Every object waits for them
# (order-only), and the .d files track the real header dependencies afterwards.
$(BUILD)/gen/%.pb-c.c $(BUILD)/gen/%.pb-c.h: proto/%.proto
	@mkdir -p $(dir $@)
	protoc-c --proto_path=proto --c_out=$(BUILD)/gen $<

$(BUILD)/gen/openapi_doc.c: api-server/openapi.json
	@mkdir -p $(dir $@)
	{ echo '#include <stddef.h>'; echo 'const unsigned char openapi_doc[] = {'; \
	  xxd -i < $<; echo '};'; \
	  echo 'const size_t openapi_doc_len = sizeof(openapi_doc);'; } > $@.tmp && mv $@.tmp $@

$(BUILD)/obj/gen/%.o: $(BUILD)/gen/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Wno-missing-prototypes -MMD -MP -c $< -o $@

$(BUILD)/obj/%.o: %.c | $(PROTO_H)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(LIB_COMMON): $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(LIB_API): $(API_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(LIB_GATEWAY): $(GATEWAY_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(LIB_ARCHIVER): $(ARCHIVER_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/bin/stemedb-api: $(BUILD)/obj/api-server/src/main.o $(LIB_API) $(LIB_COMMON)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LDLIBS_PKG)

$(BUILD)/bin/stemedb-ctl: $(CTL_OBJ) $(LIB_API) $(LIB_COMMON)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LDLIBS_PKG)

$(BUILD)/bin/stemedb-gateway: $(BUILD)/obj/cluster-gateway/src/main.o $(LIB_GATEWAY) $(LIB_API) $(LIB_COMMON)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LDLIBS_PKG)

$(BUILD)/bin/stemedb-walarchiver: $(BUILD)/obj/walarchiver/src/main.o $(LIB_ARCHIVER) $(LIB_API) $(LIB_COMMON)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LDLIBS_PKG)

$(BUILD)/bin/%: $(BUILD)/obj/bench/%.o $(LIB_API) $(LIB_COMMON)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LDLIBS_PKG)

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(LIBS_ALL)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LDLIBS_PKG) -lcmocka

# Every test layer runs even when an earlier one fails, and the exit code reports
# whether any failed. The short fuzz run goes first so that the test runner's
# summary line is the last line of the output.
test: deps
	@$(MAKE) --no-print-directory all
	@status=0; $(MAKE) --no-print-directory fuzz FUZZ_SECONDS=20 || status=1; \
	  scripts/run-tests.sh "$(BUILD)" || status=1; exit $$status

unit-test: all
	@scripts/run-tests.sh "$(BUILD)" unit

py-test: all
	@scripts/run-tests.sh "$(BUILD)" python

crash-test: all
	@scripts/run-tests.sh "$(BUILD)" crash

run: deps
	@$(MAKE) --no-print-directory all
	@scripts/run-node.sh "$(BUILD)"

bench: deps
	@$(MAKE) --no-print-directory all OPT=-O2
	@bench/run.sh "$(BUILD)"

format:
	clang-format -i $(shell git ls-files '*.c' '*.h')

lint:
	clang-format --dry-run -Werror $(shell git ls-files '*.c' '*.h')
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability \
	  --inline-suppr -Icommon/include -Iapi-server/src \
	  $(wildcard common/src api-server/src cluster-gateway/src walarchiver/src tools/src)

# libFuzzer run of the IPC frame decoder for FUZZ_SECONDS. It needs clang with its
# libFuzzer runtime (Debian: clang-14 and libclang-rt-14-dev) and is skipped without it.
FUZZ_SECONDS ?= 60
FUZZ_SRC := tests/fuzz/fuzz_ipc_frame.c common/src/ipc_frame.c common/src/buf.c
fuzz: $(BUILD)/gen/stemedb_ipc.pb-c.h
	@if ! echo 'int LLVMFuzzerTestOneInput(const char*d,long n){return 0;}' | clang -x c \
	  -fsanitize=fuzzer -o /dev/null - 2>/dev/null; then \
	  echo "fuzz: skipped, clang with the libFuzzer runtime is not installed"; exit 0; fi; \
	mkdir -p $(BUILD)/fuzz/corpus && cp tests/fuzz/corpus/ipc_frame/* $(BUILD)/fuzz/corpus/ && \
	clang -std=c11 -D_GNU_SOURCE -O1 -g -fsanitize=fuzzer,address,undefined -Icommon/include \
	  -I$(BUILD)/gen -o $(BUILD)/fuzz/fuzz_ipc_frame $(FUZZ_SRC) \
	  $(BUILD)/gen/stemedb_ipc.pb-c.c $$(pkg-config --cflags --libs libprotobuf-c) && \
	{ $(BUILD)/fuzz/fuzz_ipc_frame -max_total_time=$(FUZZ_SECONDS) -max_len=8192 \
	  $(BUILD)/fuzz/corpus > $(BUILD)/fuzz/fuzz.log 2>&1; status=$$?; \
	  tail -n 1 $(BUILD)/fuzz/fuzz.log; \
	  if [ $$status -ne 0 ]; then echo "fuzz: failed, see $(BUILD)/fuzz/fuzz.log"; fi; \
	  exit $$status; }

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

# Installation. `make install` copies the binaries, the systemd units, the sysusers
# and tmpfiles entries, the operations docs and the example configurations.
# PREFIX=/usr/local by default; DESTDIR stages the tree for a package. Only when
# DESTDIR is empty does it create the stemedb user (systemd-sysusers), the
# directories (systemd-tmpfiles) and, when systemd is running, reload it.
# /etc/stemedb/stemedb.env is written only when missing, so local settings survive.
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
SYSCONFDIR ?= /etc
UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
DOCDIR ?= $(PREFIX)/share/doc/stemedb
INSTALL_UNITS := $(wildcard systemd/*.service systemd/*.socket systemd/*.target systemd/*.timer)
INSTALL_DOCS := $(wildcard docs/*.md docs/operations/*.md docs/operations/runbooks/*.md)
INSTALL_EXAMPLES := examples/stemedb.env $(wildcard examples/nginx/* examples/prometheus/*)

.PHONY: install uninstall
install: $(BINS)
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR) \
	  $(DESTDIR)$(TMPFILESDIR) $(DESTDIR)$(SYSCONFDIR)/stemedb
	install -m 0755 $(BINS) $(DESTDIR)$(BINDIR)/
	@# The units name /usr/local paths; rewrite them for another PREFIX.
	for unit in $(INSTALL_UNITS); do \
	  sed -e 's|/usr/local/bin/|$(BINDIR)/|g' -e 's|/usr/local/share/doc/stemedb|$(DOCDIR)|g' \
	    "$$unit" > "$(DESTDIR)$(UNITDIR)/$${unit##*/}" && \
	  chmod 0644 "$(DESTDIR)$(UNITDIR)/$${unit##*/}" || exit 1; \
	done
	install -m 0644 systemd/sysusers.d/stemedb.conf $(DESTDIR)$(SYSUSERSDIR)/stemedb.conf
	install -m 0644 systemd/tmpfiles.d/stemedb.conf $(DESTDIR)$(TMPFILESDIR)/stemedb.conf
	for file in $(INSTALL_DOCS); do \
	  install -D -m 0644 "$$file" "$(DESTDIR)$(DOCDIR)/$${file#docs/}" || exit 1; \
	done
	for file in $(INSTALL_EXAMPLES); do \
	  install -D -m 0644 "$$file" "$(DESTDIR)$(DOCDIR)/$$file" || exit 1; \
	done
	test -e $(DESTDIR)$(SYSCONFDIR)/stemedb/stemedb.env || \
	  install -m 0640 examples/stemedb.env $(DESTDIR)$(SYSCONFDIR)/stemedb/stemedb.env
	@if [ -z "$(DESTDIR)" ]; then \
	  set -e; \
	  echo "systemd-sysusers $(SYSUSERSDIR)/stemedb.conf"; \
	  systemd-sysusers $(SYSUSERSDIR)/stemedb.conf; \
	  echo "systemd-tmpfiles --create $(TMPFILESDIR)/stemedb.conf"; \
	  systemd-tmpfiles --create $(TMPFILESDIR)/stemedb.conf; \
	  chgrp stemedb $(SYSCONFDIR)/stemedb/stemedb.env; \
	  if [ -d /run/systemd/system ]; then echo "systemctl daemon-reload"; systemctl daemon-reload; fi; \
	fi

# Removes what `make install` copied. The data in /var/lib/stemedb, the settings
# in /etc/stemedb and the stemedb user stay, because they belong to the operator.
uninstall:
	rm -f $(addprefix $(DESTDIR)$(BINDIR)/,stemedb-api stemedb-ctl stemedb-gateway stemedb-walarchiver)
	rm -f $(addprefix $(DESTDIR)$(UNITDIR)/,$(notdir $(INSTALL_UNITS)))
	rm -f $(DESTDIR)$(SYSUSERSDIR)/stemedb.conf $(DESTDIR)$(TMPFILESDIR)/stemedb.conf
	rm -rf $(DESTDIR)$(DOCDIR)
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then \
	  echo "systemctl daemon-reload"; systemctl daemon-reload; fi
	@echo "uninstall: kept /var/lib/stemedb, $(SYSCONFDIR)/stemedb and the stemedb user"
